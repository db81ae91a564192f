#!/usr/bin/python3
"""The attention peer: PyTorch's fused causal attention (scaled_dot_product_attention, bf16) at
one shape, forward and forward+backward, timed with CUDA events (median of --iters after
--warmup). Compare with the `attention_cudnn ... graph` rows of `RETORT_OP_PROFILE=1 retort
bench` at the same shape (docs/PERFORMANCE.md).

Usage: python3 bench/attention_peer.py [--B 8] [--H 16] [--T 1024] [--hd 64] [--iters 20]
Prints JSON: the shape, the SDPA backend PyTorch picked, fwd_ms, fwd_bwd_ms and their TFLOP/s
(causal: 2·B·H·T²·hd forward, 2.5× that backward).
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("B", 8), ("H", 16), ("T", 1024), ("hd", 64), ("iters", 20), ("warmup", 5)):
        p.add_argument(f"--{name}", type=int, default=default)
    a = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("attention_peer.py: no GPU visible to PyTorch")
    q, k, v = (torch.randn(a.B, a.H, a.T, a.hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    dout = torch.randn_like(q)

    def forward():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def forward_backward():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        torch.autograd.grad(out, (q, k, v), dout)

    backend = "?"
    try:  # which fused kernel PyTorch would run (private API: best effort)
        from torch.backends.cuda import SDPAParams, can_use_flash_attention
        params = SDPAParams(q, k, v, None, 0.0, True, False)
        backend = "flash" if can_use_flash_attention(params, False) else "not flash"
    except Exception:
        pass
    fwd, fb = timed(forward, a.warmup, a.iters), timed(forward_backward, a.warmup, a.iters)
    flops_fwd = 2.0 * a.B * a.H * a.T * a.T * a.hd  # causal: half of 4·B·H·T²·hd
    print(json.dumps({"shape": {"B": a.B, "H": a.H, "T": a.T, "head_dim": a.hd}, "torch": torch.__version__,
                      "sdpa_backend": backend, "fwd_ms": fwd, "fwd_bwd_ms": fb, "bwd_ms": fb - fwd,
                      "fwd_tflops": flops_fwd / fwd / 1e9, "fwd_bwd_tflops": 3.5 * flops_fwd / fb / 1e9},
                     indent=1))


if __name__ == "__main__":
    main()
