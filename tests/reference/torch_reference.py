#!/usr/bin/python3
"""Independent float64 PyTorch implementation of SPEC §1, checked against retort.

Usage: /usr/bin/python3 torch_reference.py MODEL_H5 GRADS_H5

MODEL_H5  every parameter as a float32 dataset at its SPEC (Hugging Face) name; the model
          shape as root attributes (vocab_size, d_model, n_layers, n_heads, n_kv_heads,
          head_dim, d_ff, rope_theta, norm_eps, qk_norm, qkv_bias, tie_embeddings,
          sliding_window, no_rope_interval).
GRADS_H5  tokens [B, T+1] int32 (inputs = tokens[:, :-1], targets = tokens[:, 1:]),
          attributes z_loss, loss, ce, z; the gradient of the loss w.r.t. every parameter
          as grad/<name>. Distillation (attribute kd_mode = online | renormalize | bucket):
          attributes kd_lambda, kd_tau, kl and the teacher as teacher_logits [R, V] (online)
          or topk_ids / topk_logprobs [R, k] (offline); the loss is then
          (1 - lambda) CE + lambda tau^2 KL + z_loss z (docs/DISTILLATION.md).

Written from the SPEC text, not from the C++: the math below is the SPEC's pseudo-code.
Checks: the parameter names/shapes are exactly the SPEC's, |loss - ref| <= 1e-5 |ref| (same for
ce), and for every parameter ||g - g_ref|| <= 1e-4 ||g_ref||. Exit 0 on success, 1 on failure.
"""
import math
import sys

import h5py
import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def spec_names(c):
    """Parameter names and shapes as SPEC §1 lists them."""
    V, d, L, H, Hkv, hd, F = (c[k] for k in ("vocab_size", "d_model", "n_layers", "n_heads",
                                           "n_kv_heads", "head_dim", "d_ff"))
    out = {"model.embed_tokens.weight": (V, d)}
    for i in range(L):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = (d,)
        out[p + "self_attn.q_proj.weight"] = (H * hd, d)
        out[p + "self_attn.k_proj.weight"] = (Hkv * hd, d)
        out[p + "self_attn.v_proj.weight"] = (Hkv * hd, d)
        if c["qkv_bias"]:
            out[p + "self_attn.q_proj.bias"] = (H * hd,)
            out[p + "self_attn.k_proj.bias"] = (Hkv * hd,)
            out[p + "self_attn.v_proj.bias"] = (Hkv * hd,)
        out[p + "self_attn.o_proj.weight"] = (d, H * hd)
        if c["qk_norm"]:
            out[p + "self_attn.q_norm.weight"] = (hd,)
            out[p + "self_attn.k_norm.weight"] = (hd,)
        out[p + "post_attention_layernorm.weight"] = (d,)
        out[p + "mlp.gate_proj.weight"] = (F, d)
        out[p + "mlp.up_proj.weight"] = (F, d)
        out[p + "mlp.down_proj.weight"] = (d, F)
    out["model.norm.weight"] = (d,)
    if not c["tie_embeddings"]:
        out["lm_head.weight"] = (V, d)
    return out


def rms_norm(x, g, eps):
    # x / sqrt(mean(x²) + eps) ⊙ g, over the last dim
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * g


def inverse_frequencies(c):
    # theta^(-2i/hd); Llama 3.1's "llama3" scaling by wavelength 2π/f against the original
    # context C: kept below C/high, divided by the factor above C/low, linearly blended between
    hd = c["head_dim"]
    f = c["rope_theta"] ** (-2.0 * torch.arange(hd // 2, dtype=torch.float64) / hd)
    if c["rope_scaling"] != "llama3":
        return f
    C, s = c["rope_original_max_position"], c["rope_scaling_factor"]
    lo, hi = c["rope_low_freq_factor"], c["rope_high_freq_factor"]
    out = []
    for fi in f.tolist():
        wavelength = 2 * math.pi / fi
        if wavelength < C / hi:
            out.append(fi)
        elif wavelength > C / lo:
            out.append(fi / s)
        else:
            w = (C / wavelength - lo) / (hi - lo)
            out.append(w * fi + (1 - w) * fi / s)
    return torch.tensor(out, dtype=torch.float64)


def rotate(x, inv_freq):
    # x: [B, T, n, hd]; rotate-half: pairs (i, i + hd/2), angle = pos · inv_freq_i
    T, hd = x.shape[1], x.shape[3]
    half = hd // 2
    angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # [T, half]
    c = torch.cos(angle)[None, :, None, :]
    s = torch.sin(angle)[None, :, None, :]
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * c - b * s, b * c + a * s], dim=-1)


def model_loss(W, c, inputs, targets, z_loss):
    V, d, L, H, Hkv, hd = (c[k] for k in ("vocab_size", "d_model", "n_layers", "n_heads",
                                        "n_kv_heads", "head_dim"))
    eps, inv_freq = c["norm_eps"], inverse_frequencies(c)
    B, T = inputs.shape
    x = W["model.embed_tokens.weight"][inputs]  # [B, T, d]
    # query i sees key j for j <= i, and with a sliding window W > 0 only for i - j < W
    i_idx, j_idx = torch.arange(T)[:, None], torch.arange(T)[None, :]
    mask = j_idx <= i_idx
    if c["sliding_window"] > 0:
        mask = mask & (i_idx - j_idx < c["sliding_window"])
    for i in range(L):
        p = f"model.layers.{i}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        def proj(name, heads):  # h Wᵀ (+ b: Qwen2's q, k, v biases)
            y = h @ W[p + f"self_attn.{name}_proj.weight"].T
            if c["qkv_bias"]:
                y = y + W[p + f"self_attn.{name}_proj.bias"]
            return y.view(B, T, heads, hd)
        q, k, v = proj("q", H), proj("k", Hkv), proj("v", Hkv)
        if c["qk_norm"]:
            q = rms_norm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
        # NoPE layers (SmolLM3): every no_rope_interval-th layer leaves q and k unrotated
        N = c["no_rope_interval"]
        if N == 0 or (i + 1) % N != 0:
            q, k = rotate(q, inv_freq), rotate(k, inv_freq)
        heads = []
        for hh in range(H):
            j = hh // (H // Hkv)
            qh, kh, vh = q[:, :, hh, :], k[:, :, j, :], v[:, :, j, :]  # [B, T, hd]
            s = qh @ kh.transpose(1, 2) / math.sqrt(hd)                # [B, T, T]
            s = s.masked_fill(~mask, float("-inf"))
            heads.append(torch.softmax(s, dim=-1) @ vh)
        a = torch.cat(heads, dim=-1)                                   # [B, T, H·hd]
        x = x + a @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if c["tie_embeddings"] else W["lm_head.weight"]
    logits = (x @ head.T).reshape(B * T, V)
    t = targets.reshape(B * T)
    lse = torch.logsumexp(logits, dim=-1)
    ce = (lse - logits[torch.arange(B * T), t]).mean()
    z = (lse * lse).mean()
    return ce + z_loss * z, ce, z, logits


def kd_kl(logits, g, tau):
    """mean_r KL(p_T^tau || softmax(logits_r / tau)) as docs/DISTILLATION.md defines it, with
    the teacher from GRADS_H5: full logits (online) or top-k log-probs at tau (offline)."""
    mode = g.attrs["kd_mode"]
    F = torch.nn.functional
    logq = F.log_softmax(logits / tau, dim=-1)                              # [R, V]
    if mode == "online":
        t = torch.tensor(np.asarray(g["teacher_logits"]).astype(np.float64))
        return F.kl_div(logq, F.log_softmax(t / tau, dim=-1), log_target=True,
                        reduction="sum") / logits.shape[0]
    ids = torch.tensor(np.asarray(g["topk_ids"]).astype(np.int64))          # [R, k]
    lp = torch.tensor(np.asarray(g["topk_logprobs"]).astype(np.float64))    # [R, k]
    logq_k = logq.gather(1, ids)
    if mode == "renormalize":
        lp_hat = torch.log_softmax(lp, dim=-1)       # top-k renormalised to sum to 1
        kl = (lp_hat.exp() * (lp_hat - logq_k)).sum(-1)
    else:                                            # bucket: one tail bucket on each side
        p = lp.exp()
        P = (1 - p.sum(-1)).clamp(min=0)
        outside = torch.ones_like(logq).scatter(1, ids, 0.0)
        Q = (logq.exp() * outside).sum(-1)
        kl = (p * (lp - logq_k)).sum(-1) + torch.where(P > 0, P * (P.log() - Q.log()), 0.0)
    return kl.mean()


def main():
    model_path, grads_path = sys.argv[1], sys.argv[2]
    ok = True
    with h5py.File(model_path, "r") as f:
        a = f.attrs
        c = {k: int(a[k]) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads",
                                    "head_dim", "d_ff", "qk_norm", "tie_embeddings")}
        c["qkv_bias"] = int(a.get("qkv_bias", 0))
        c["sliding_window"] = int(a.get("sliding_window", 0))
        c["no_rope_interval"] = int(a.get("no_rope_interval", 0))
        c["rope_theta"] = float(a["rope_theta"])
        c["rope_scaling"] = str(a["rope_scaling"].decode() if isinstance(a["rope_scaling"], bytes) else a["rope_scaling"])
        for k in ("rope_scaling_factor", "rope_low_freq_factor", "rope_high_freq_factor"):
            c[k] = float(a[k])
        c["rope_original_max_position"] = int(a["rope_original_max_position"])
        if c["rope_scaling"] == "llama3":
            print("rope llama3 frequencies:", [f"{v:.4g}" for v in inverse_frequencies(c).tolist()])
        c["norm_eps"] = float(a["norm_eps"])
        expected = spec_names(c)
        stored = {}
        f.visititems(lambda n, o: stored.__setitem__(n, o) if isinstance(o, h5py.Dataset) else None)
        if set(stored) != set(expected):
            print("FAIL parameter names differ from SPEC: missing", sorted(set(expected) - set(stored)),
                  "unexpected", sorted(set(stored) - set(expected)))
            return 1
        W = {}
        for n, shape in expected.items():
            arr = np.asarray(stored[n])
            if arr.dtype != np.float32 or arr.shape != shape:
                print(f"FAIL {n}: stored {arr.dtype} {arr.shape}, SPEC float32 {shape}")
                ok = False
            W[n] = torch.tensor(arr.astype(np.float64), requires_grad=True)
    with h5py.File(grads_path, "r") as g:
        tokens = torch.tensor(np.asarray(g["tokens"]).astype(np.int64))
        z_loss = float(g.attrs["z_loss"])
        got = {k: float(g.attrs[k]) for k in ("loss", "ce", "z")}
        grads = {n: np.asarray(g["grad"][n]).astype(np.float64) for n in expected}

    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    loss, ce, z, logits = model_loss(W, c, inputs, targets, z_loss)
    with h5py.File(grads_path, "r") as g:
        if "kd_mode" in g.attrs:  # distillation: (1-lambda) CE + lambda tau^2 KL + z
            lam, tau = float(g.attrs["kd_lambda"]), float(g.attrs["kd_tau"])
            kl = kd_kl(logits, g, tau)
            loss = (1 - lam) * ce + lam * tau * tau * kl + z_loss * z
            got["kl"] = float(g.attrs["kl"])
            print(f"distillation {g.attrs['kd_mode']} lambda {lam} tau {tau}")
    loss.backward()
    print(f"config {c} z_loss {z_loss} tokens {tuple(tokens.shape)}")
    refs = [("loss", loss.item()), ("ce", ce.item()), ("z", z.item())]
    if "kl" in got:
        refs.append(("kl", kl.item()))
    for k, ref in refs:
        rel = abs(got[k] - ref) / abs(ref)
        flag = "ok" if rel <= 1e-5 else "FAIL"
        ok &= rel <= 1e-5
        print(f"{flag} {k}: retort {got[k]:.9g} torch {ref:.9g} rel {rel:.2e}")
    worst = 0.0
    for n in expected:
        ref = W[n].grad.numpy()
        num = np.linalg.norm(grads[n] - ref)
        den = np.linalg.norm(ref)
        rel = num / den if den > 0 else num
        worst = max(worst, rel)
        if not (rel <= 1e-4) or den == 0:
            ok = False
            print(f"FAIL grad {n}: rel {rel:.2e} (|ref| {den:.3e})")
    print(f"{'ok' if ok else 'FAIL'}: {len(expected)} parameter gradients, worst rel {worst:.2e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
