#!/usr/bin/env python3
"""Summary of a quickstart run dir (launch/quickstart.sh): a table on stdout, summary.json and
losses.png (training CE and validation loss against tokens for the teacher and both students).

summary.json: {"teacher": {...}, "corpus": {...}, "student_distilled": {...},
"student_supervised": {...}, "distillation_wins": bool}; each training stage has val_loss
(retort eval on the validation split), tokens, wall_s, params; students add kl_to_teacher (mean
KL(p_teacher ‖ p_student) per validation token); the corpus has tokens, sequences, k, wall_s.
"""
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def main(run):
    stages = {}
    for name in ("teacher", "student_distilled", "student_supervised"):
        s = load(os.path.join(run, name, "summary.json"))
        e = load(os.path.join(run, "eval", name + ".json"))
        stages[name] = {"val_loss": e["loss"], "tokens": s["tokens_seen"], "wall_s": s["wall_s"],
                        "params": s["params"], "params_nonembedding": s["params_nonembedding"]}
        if "kl_to_teacher" in e:
            stages[name]["kl_to_teacher"] = e["kl_to_teacher"]
    m = load(os.path.join(run, "corpus", "manifest.json"))
    n_seq = sum(sh["sequences"] for sh in m["shards"])
    wall_file = os.path.join(run, "wall", "corpus")
    corpus = {"sequences": n_seq, "tokens": n_seq * (m["seq_len"] - 1), "k": m["k"],
              "wall_s": float(open(wall_file).read()) if os.path.exists(wall_file) else None,
              "bytes": sum(os.path.getsize(os.path.join(run, "corpus", sh["file"])) for sh in m["shards"])}
    d, s = stages["student_distilled"], stages["student_supervised"]
    summary = {"teacher": stages["teacher"], "corpus": corpus, "student_distilled": d,
               "student_supervised": s, "distillation_wins": d["val_loss"] < s["val_loss"]}
    with open(os.path.join(run, "summary.json") + ".tmp", "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(os.path.join(run, "summary.json") + ".tmp", os.path.join(run, "summary.json"))

    def wall(x):
        return "-" if x is None else f"{x:.1f} s"
    print(f"  {'':<20} {'params':>10} {'tokens':>10} {'val loss':>9} {'KL to teacher':>14} {'wall':>7}")
    for name, st in (("teacher", stages["teacher"]), ("student distilled", d), ("student supervised", s)):
        kl = f"{st['kl_to_teacher']:.4f}" if "kl_to_teacher" in st else "-"
        print(f"  {name:<20} {st['params']:>10,} {st['tokens']:>10,} {st['val_loss']:>9.4f} {kl:>14} {wall(st['wall_s']):>7}")
    print(f"  {'corpus':<20} {'k=' + str(corpus['k']):>10} {corpus['tokens']:>10,} {'':>9} {'':>14} {wall(corpus['wall_s']):>7}"
          f"   ({corpus['bytes'] / 1e6:.1f} MB)")
    verdict = "beats" if summary["distillation_wins"] else "does NOT beat"
    print(f"\n  the distilled student {verdict} the supervised one on the same {d['tokens']:,} tokens "
          f"({d['val_loss']:.4f} vs {s['val_loss']:.4f})")
    print(f"  {os.path.join(run, 'summary.json')}")
    try:
        plot(run)
        print(f"  {os.path.join(run, 'losses.png')}")
    except ImportError:
        print("  (no losses.png: matplotlib is missing; launch/install-deps.sh installs python3-matplotlib)")


def plot(run):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, color in (("teacher", "black"), ("student_distilled", "tab:blue"),
                        ("student_supervised", "tab:orange")):
        lines = [json.loads(l) for l in open(os.path.join(run, name, "metrics.jsonl"))]
        train = [l for l in lines if "ce" in l]
        val = [l for l in lines if "val_loss" in l]
        label = name.replace("_", " ")
        ax.plot([l["tokens"] for l in train], [l["ce"] for l in train], color=color, alpha=0.4, lw=1)
        ax.plot([l["tokens"] for l in val], [l["val_loss"] for l in val], "o-", color=color,
                label=label + " (val)")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("next-token cross-entropy (nats)")
    ax.set_title("quickstart: faint = training CE, dots = validation loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(run, "losses.png"), dpi=120)


if __name__ == "__main__":
    main(sys.argv[1])
