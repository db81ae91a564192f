#!/usr/bin/python3
"""Plots for `retort fit` (run by it, or by hand): /usr/bin/python3 scaling/plot_fit.py fit.json

Reads fit.json (which holds the fitted data under "data"/"dropped") and writes PNGs next to it:
  supervised, approach3:  law_vs_data.png, isoflop.png (law's IsoFLOP curves + data, N_opt trend)
  supervised, approach2:  isoflop.png (parabolas per budget + N_opt), n_opt_trend.png
  distillation:           law_vs_data.png, student_vs_teacher.png
"""
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def sup_loss(j, N, D):
    return j["E"] + (j["A"] * N ** -j["alpha"] + j["B"] * D ** -j["beta"]) ** j["gamma"]


def distill_loss(j, N, D, LT):
    s = j["supervised"]
    Ls = sup_loss(s, N, D)
    gap = (1 + (LT / (Ls * j["d1"])) ** (1 / j["f1"])) ** (-j["c1"] * j["f1"])
    return LT + LT ** -j["c0"] * gap * (j["A"] * N ** -j["alpha"] + j["B"] * D ** -j["beta"]) ** j["gamma"]


def budgets(C, tol=0.05):
    """Group indices by log10 C, splitting where consecutive values differ by > tol decades."""
    order = np.argsort(C)
    groups = []
    for k, i in enumerate(order):
        if k == 0 or math.log10(C[i]) - math.log10(C[order[k - 1]]) > tol:
            groups.append([])
        groups[-1].append(i)
    return groups


def save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print("  wrote", path)


def law_vs_data(j, out_dir, predict, title):
    d = j["data"]
    obs = np.array(d["loss"])
    pred = predict(d)
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(pred, obs, c=np.log10(d["N"]), cmap="viridis", s=18)
    fig.colorbar(sc, ax=ax, label="log10 N")
    if j.get("dropped", {}).get("loss"):
        dd = j["dropped"]
        ax.scatter(predict(dd), dd["loss"], marker="x", color="gray", label="dropped")
        ax.legend()
    lo, hi = min(pred.min(), obs.min()), max(pred.max(), obs.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("law prediction")
    ax.set_ylabel("observed loss")
    ax.set_title(f"{title}\nRMS log residual {j.get('rms_log_residual', float('nan')):.4f}")
    save(fig, out_dir, "law_vs_data.png")


def supervised_approach3(j, out_dir):
    law_vs_data(j, out_dir, lambda d: sup_loss(j, np.array(d["N"]), np.array(d["D"])),
                f"{j['form']}: E={j['E']:.3f} A={j['A']:.4g} B={j['B']:.4g} "
                f"α={j['alpha']:.3f} β={j['beta']:.3f} γ={j['gamma']:.3f}")
    d = j["data"]
    N, C, L = np.array(d["N"]), np.array(d["C"]), np.array(d["loss"])
    groups = budgets(C)
    cmap = plt.get_cmap("plasma")
    fig, ax = plt.subplots(figsize=(7, 5))
    nopt = []
    for k, g in enumerate(groups):
        color = cmap(k / max(len(groups) - 1, 1))
        c = math.exp(np.mean(np.log(C[g])))
        ax.scatter(N[g], L[g], color=color, s=14)
        if len(g) >= 3:
            ns = np.logspace(math.log10(N[g].min()) - 0.2, math.log10(N[g].max()) + 0.2, 100)
            ax.plot(ns, sup_loss(j, ns, c / (6 * ns)), color=color, lw=1, label=f"C={c:.2g}")
            G = (j["alpha"] * j["A"] / (j["beta"] * j["B"])) ** (1 / (j["alpha"] + j["beta"]))
            n_opt = G * (c / 6) ** j["a"]
            nopt.append((n_opt, sup_loss(j, n_opt, c / (6 * n_opt))))
    if nopt:
        ax.plot(*zip(*nopt), "k.--", lw=1, label="N_opt(C)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
    ax.set_title(f"IsoFLOP curves of the fitted law (a={j['a']:.3f}, b={j['b']:.3f})")
    if len(groups) <= 12:
        ax.legend(fontsize=7)
    save(fig, out_dir, "isoflop.png")


def supervised_approach2(j, out_dir):
    d = j["data"]
    N, L = np.array(d["N"]), np.array(d["loss"])
    bs = j["isoflop_budgets"]
    cmap = plt.get_cmap("plasma")
    fig, ax = plt.subplots(figsize=(7, 5))
    for k, b in enumerate(bs):
        color = cmap(k / max(len(bs) - 1, 1))
        rows = [d["line"].index(line) for line in b["lines"]]
        ax.scatter(N[rows], L[rows], color=color, s=14)
        x = np.linspace(math.log(N[rows].min()) - 0.3, math.log(N[rows].max()) + 0.3, 100)
        p = b["parabola"]
        ax.plot(np.exp(x), p["c0"] + p["c1"] * x + p["c2"] * x * x, color=color, lw=1, label=f"C={b['C']:.2g}")
        ax.plot(b["N_opt"], b["L_opt"], "k*", ms=8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
    ax.set_title("IsoFLOP profiles: parabolas in log N, minima (*)")
    ax.legend(fontsize=7)
    save(fig, out_dir, "isoflop.png")

    C = np.array([b["C"] for b in bs])
    fig, ax = plt.subplots(figsize=(6, 5))
    for key, label, m in (("N_opt", "N_opt", "o"), ("D_opt", "D_opt", "s")):
        f = j[key + "_fit"]
        ax.scatter(C, [b[key] for b in bs], marker=m, label=f"{label} ∝ C^{f['exponent']:.3f}")
        cs = np.logspace(math.log10(C.min()) - 0.3, math.log10(C.max()) + 0.3, 50)
        ax.plot(cs, f["coefficient"] * cs ** f["exponent"], lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_title(f"Approach 2: a={j['a']:.3f}, b={j['b']:.3f}")
    ax.legend()
    save(fig, out_dir, "n_opt_trend.png")


def distillation(j, out_dir):
    law_vs_data(j, out_dir,
                lambda d: distill_loss(j, np.array(d["N"]), np.array(d["D"]), np.array(d["teacher_loss"])),
                f"distillation law: c0={j['c0']:.3g} c1={j['c1']:.3g} d1={j['d1']:.3g} f1={j['f1']:.3g}")
    d = j["data"]
    N, D, LT, LS = (np.array(d[k]) for k in ("N", "D", "teacher_loss", "loss"))
    fig, ax = plt.subplots(figsize=(7, 5))
    sc = ax.scatter(LT, LS, c=np.log10(N), cmap="viridis", s=16, zorder=3)
    fig.colorbar(sc, ax=ax, label="log10 N_S")
    lt = np.linspace(LT.min() * 0.95, LT.max() * 1.05, 100)
    pairs = sorted(set(zip(N.tolist(), D.tolist())))
    step = max(1, len(pairs) // 8)  # at most ~8 curves
    for n, dd in pairs[::step]:
        ax.plot(lt, distill_loss(j, n, dd, lt), lw=1, color=plt.cm.viridis(
            (math.log10(n) - math.log10(N.min())) / max(math.log10(N.max() / N.min()), 1e-9)))
    ax.plot(lt, lt, "k--", lw=1, label="L_S = L_T")
    ax.set_xlabel("teacher loss L_T")
    ax.set_ylabel("student loss L_S")
    ax.set_title("student vs teacher loss (curves: the law at fixed N_S, D_S)")
    ax.legend()
    save(fig, out_dir, "student_vs_teacher.png")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: plot_fit.py fit.json")
    with open(sys.argv[1]) as f:
        j = json.load(f)
    out_dir = os.path.dirname(os.path.abspath(sys.argv[1]))
    if j["law"] == "distillation":
        distillation(j, out_dir)
    elif j["method"] == "approach2":
        supervised_approach2(j, out_dir)
    else:
        supervised_approach3(j, out_dir)


if __name__ == "__main__":
    main()
