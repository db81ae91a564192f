#!/usr/bin/python3
"""Times steady-state training steps of the PyTorch eager peer (bench/pytorch_model.py).

Usage: /usr/bin/python3 bench/pytorch_bench.py [CONFIG.yaml] [--threads N] [--steps S]
       [--warmup W] [--no-foreach] [--seed K] [--device cuda] [--bf16] [--compile]

Same work per step as `retort bench`: forward, backward, clip_grad_norm_(1.0), AdamW
(betas 0.9/0.95, eps 1e-8, wd 0.1 on matrices only), batch_tokens/seq_len sequences of
synthetic uniform tokens. Prints JSON with tokens_per_s from the median step time.
On a GPU (--device cuda): --bf16 runs the forward/backward under torch.autocast(bfloat16)
(fp32 master weights and AdamW state, like retort's train.precision: bf16), --compile wraps
the model in torch.compile; the GPU is synchronised before each step's clock is read.
Thread environment variables (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS) are
read before torch loads, so set them in the caller's environment; --threads calls
torch.set_num_threads (intra-op).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from pytorch_model import Transformer, default_d_ff, make_optimizer  # noqa: E402

ENV_KEYS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GLIBC_TUNABLES", "LD_PRELOAD")


def model_config(path):
    """The model/train keys of a retort config, with SPEC §1 defaults filled in."""
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    m, t = cfg.get("model", {}), cfg.get("train", {})
    d, H = int(m["d_model"]), int(m["n_heads"])
    c = {
        "vocab_size": int(m["vocab_size"]), "d_model": d, "n_layers": int(m["n_layers"]),
        "n_heads": H, "n_kv_heads": int(m.get("n_kv_heads", H)),
        "head_dim": int(m.get("head_dim", d // H)), "d_ff": int(m.get("d_ff", default_d_ff(d))),
        "rope_theta": float(m.get("rope_theta", 500000.0)), "norm_eps": float(m.get("norm_eps", 1e-5)),
        "qk_norm": bool(m.get("qk_norm", True)), "tie_embeddings": bool(m.get("tie_embeddings", True)),
        "seq_len": int(m["seq_len"]),
    }
    train = {"batch_tokens": int(t.get("batch_tokens", 4096)), "z_loss": float(t.get("z_loss", 1e-4)),
             "grad_clip": float(t.get("grad_clip", 1.0)), "micro_batch": int(t.get("micro_batch", 0))}
    return c, train


def flops_per_token_mfu(c):
    # SPEC §1 (PaLM convention): 6·(N_nonemb + V·d) + 12·L·H·hd·T
    d, F, H, Hkv, hd = c["d_model"], c["d_ff"], c["n_heads"], c["n_kv_heads"], c["head_dim"]
    per_layer = d * H * hd * 2 + d * Hkv * hd * 2 + 3 * d * F + 2 * d + (2 * hd if c["qk_norm"] else 0)
    n_nonemb = c["n_layers"] * per_layer + d + (0 if c["tie_embeddings"] else c["vocab_size"] * d)
    return 6 * (n_nonemb + c["vocab_size"] * d) + 12 * c["n_layers"] * H * hd * c["seq_len"]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", default=os.path.join(here, "..", "configs", "bench-cpu.yaml"))
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (intra-op)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-foreach", action="store_true", help="AdamW foreach=False")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--bf16", action="store_true", help="autocast matmuls to bfloat16")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--micro-batch", type=int, default=0,
                    help="sequences per forward (default: the config's train.micro_batch; 0 there: all)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    c, tr = model_config(a.config)
    T = c["seq_len"]
    B = tr["batch_tokens"] // T
    dev = torch.device(a.device)
    c["sdpa"] = a.device == "cuda"  # flash attention on the GPU; the plain product on the CPU
    model = Transformer(c).to(dev)
    opt = make_optimizer(model, lr=1e-4, foreach=not a.no_foreach)
    params = list(model.parameters())
    step_model = torch.compile(model) if a.compile else model
    gen = torch.Generator().manual_seed(a.seed + 1)
    mb = a.micro_batch or tr["micro_batch"] or B
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    times, cpu = [], []
    for i in range(a.warmup + a.steps):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        tokens = torch.randint(0, c["vocab_size"], (B, T + 1), generator=gen).to(dev)
        opt.zero_grad(set_to_none=True)
        for s in range(0, B, mb):  # gradient accumulation over micro-batches
            chunk = tokens[s : s + mb]
            with torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.bf16):
                loss = step_model(chunk[:, :-1], chunk[:, 1:], tr["z_loss"]) * (chunk.shape[0] / B)
            loss.backward()
        if tr["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(params, tr["grad_clip"])
        opt.step()
        sync()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if i >= a.warmup:
            times.append(dt)
            cpu.append(dc)

    step_s = statistics.median(times)
    tok_s = B * T / step_s
    fpt = flops_per_token_mfu(c)
    out = {
        "impl": "pytorch-compile" if a.compile else "pytorch-eager",
        "device": a.device,
        "bf16_autocast": a.bf16,
        "gpu_peak_bytes": torch.cuda.max_memory_allocated() if a.device == "cuda" else 0,
        "config": os.path.relpath(a.config),
        "model": c,
        "tokens_per_step": B * T,
        "steps_timed": a.steps,
        "warmup": a.warmup,
        "step_s_median": step_s,
        "step_s_all": times,
        "step_cpu_s_median": statistics.median(cpu),  # process CPU time, all threads
        "tokens_per_s": tok_s,
        "flops_per_token_mfu": fpt,
        "achieved_gflops": tok_s * fpt / 1e9,
        "final_loss": loss.item(),
        "params": sum(p.numel() for p in params),
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "adamw_foreach": not a.no_foreach,
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
