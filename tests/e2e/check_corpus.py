#!/usr/bin/python3
"""Checks on distillation corpora (SPEC §5) for the e2e tests; written from the SPEC.

  check_corpus.py same A B                  identical contents (manifest, attributes, datasets)
        (both: every shard's size and sha256, where the manifest records them, match the file)
  check_corpus.py tokens A B                the same tokens and prompt lengths (the top-k rows
        may differ by rounding: corpora from two devices)
  check_corpus.py teacher CORPUS TEACHER TOL  every stored row is the teacher's top-k of
        log_softmax(logits / logit_temperature), recomputed here in float64 PyTorch from the
        teacher's model.h5 + config.yaml (teacher-forced over the stored tokens):
        |lp - ref| <= TOL (+ the float16 rounding bound 2^-11 |ref| for float16 storage: binary16
        cannot hold a log-prob of -6 closer than 0.002) and the stored ids are a top-k set of ref
        up to TOL.
"""
import hashlib
import json
import math
import os
import sys

import h5py
import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from torch_reference import inverse_frequencies, rms_norm, rotate  # SPEC §1 pieces, float64

torch.set_default_dtype(torch.float64)


def shards(d):
    m = json.load(open(os.path.join(d, "manifest.json")))
    for s in m["shards"]:  # optional checksums (docs/FORMATS.md)
        data = open(os.path.join(d, s["file"]), "rb").read()
        assert s.get("bytes", len(data)) == len(data), f"{d}/{s['file']}: size differs from the manifest"
        assert s.get("sha256", "").lower() in ("", hashlib.sha256(data).hexdigest()), \
            f"{d}/{s['file']}: sha256 differs from the manifest"
    return m, [os.path.join(d, s["file"]) for s in m["shards"]]


def same(a, b):
    ma, fa = shards(a)
    mb, fb = shards(b)
    assert ma == mb, f"manifests differ:\n{ma}\n{mb}"
    for x, y in zip(fa, fb):
        with h5py.File(x) as p, h5py.File(y) as q:
            assert dict(p.attrs) == dict(q.attrs), f"{x}: attributes differ"
            assert sorted(p) == sorted(q), f"{x}: datasets differ"
            for n in p:
                assert p[n].dtype == q[n].dtype, f"{x}:{n}: dtype differs"
                assert np.array_equal(p[n][()], q[n][()]), f"{x}:{n}: contents differ"
    print(f"ok: {a} == {b} ({len(fa)} shards, {ma['num_sequences']} sequences)")


def same_tokens(a, b):
    fa, fb = shards(a)[1], shards(b)[1]
    assert len(fa) == len(fb), f"{a}, {b}: {len(fa)} and {len(fb)} shards"
    for x, y in zip(fa, fb):
        with h5py.File(x) as p, h5py.File(y) as q:
            for n in ("tokens", "prompt_len"):
                assert np.array_equal(p[n][()], q[n][()]), f"{x}, {y}: {n} differ"
    print(f"ok: {a} and {b} hold the same tokens ({len(fa)} shards)")


def teacher_logits(W, c, tokens):
    """[B, T, V] logits of SPEC §1 for int64 tokens [B, T]."""
    L, H, Hkv = c["n_layers"], c["n_heads"], c["n_kv_heads"]
    hd = c["head_dim"]
    eps, inv_freq = c["norm_eps"], inverse_frequencies(c)
    B, T = tokens.shape
    x = W["model.embed_tokens.weight"][tokens]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(L):
        p = f"model.layers.{i}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(B, T, H, hd)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(B, T, Hkv, hd)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(B, T, Hkv, hd)
        if c["qk_norm"]:
            q = rms_norm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k = rotate(q, inv_freq), rotate(k, inv_freq)
        heads = []
        for hh in range(H):
            j = hh // (H // Hkv)
            s = q[:, :, hh] @ k[:, :, j].transpose(1, 2) / math.sqrt(hd)
            heads.append(torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v[:, :, j])
        x = x + torch.cat(heads, -1) @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        x = x + (torch.nn.functional.silu(h @ W[p + "mlp.gate_proj.weight"].T)
                 * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if c["tie_embeddings"] else W["lm_head.weight"]
    return x @ head.T


def teacher(corpus, tdir, tol):
    m, files = shards(corpus)
    model = yaml.safe_load(open(os.path.join(tdir, "config.yaml")))["model"]
    with h5py.File(os.path.join(tdir, "model.h5")) as f:
        W = {n: torch.tensor(np.asarray(f[n], np.float64)) for n in f}  # flat names
        if not W:
            raise SystemExit("no datasets")
    d, H = model["d_model"], model["n_heads"]
    c = dict(n_layers=model["n_layers"], n_heads=H, n_kv_heads=model.get("n_kv_heads") or H,
             head_dim=model.get("head_dim") or d // H, norm_eps=float(model.get("norm_eps", 1e-5)),
             rope_theta=float(model.get("rope_theta", 500000)), qk_norm=model.get("qk_norm", True),
             tie_embeddings=model.get("tie_embeddings", True), rope_scaling=model.get("rope_scaling", "none"),
             rope_scaling_factor=float(model.get("rope_scaling_factor", 8)),
             rope_low_freq_factor=float(model.get("rope_low_freq_factor", 1)),
             rope_high_freq_factor=float(model.get("rope_high_freq_factor", 4)),
             rope_original_max_position=int(model.get("rope_original_max_position", 8192)))
    tau = m.get("logit_temperature", 1.0)
    worst, raw, rows = -1.0, 0.0, 0
    for path in files:
        with h5py.File(path) as f:
            toks = torch.tensor(f["tokens"][()].astype(np.int64))
            ids = f["topk_ids"][()]
            half = f["topk_logprobs"].dtype == np.float16
            lp = f["topk_logprobs"][()].astype(np.float64)
        ref = torch.log_softmax(teacher_logits(W, c, toks) / tau, -1)[:, :-1].numpy()  # [S, Ls-1, V]
        got = np.take_along_axis(ref, ids.astype(np.int64), -1)
        bound = tol + (np.abs(got) * 2.0**-11 if half else 0.0)
        assert (np.abs(got - lp) <= bound).all(), \
            f"{path}: stored log-probs differ from the teacher by {np.abs(got - lp).max():.3g}"
        worst = max(worst, float((np.abs(got - lp) - (bound - tol)).max()))
        raw = max(raw, float(np.abs(got - lp).max()))
        kth = -np.sort(-ref, -1)[..., ids.shape[-1] - 1]   # k-th largest reference log-prob
        assert (got >= kth[..., None] - tol).all(), f"{path}: stored ids are not the top-k"
        assert (np.diff(lp, axis=-1) <= tol).all(), f"{path}: rows not sorted by log-prob"
        rows += ids.shape[0] * ids.shape[1]
    print(f"ok: {corpus}: {rows} rows; max |lp - ref| {raw:.2g}, max excess over the storage "
          f"rounding bound {worst:.2g} (allowed {tol})")


if __name__ == "__main__":
    if sys.argv[1] == "same":
        same(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "tokens":
        same_tokens(sys.argv[2], sys.argv[3])
    else:
        teacher(sys.argv[2], sys.argv[3], float(sys.argv[4]))
