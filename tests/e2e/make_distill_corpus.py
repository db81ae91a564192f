#!/usr/bin/python3
"""Writes a small SPEC §5 distillation corpus with h5py (independent of retort's writer).

Usage: make_distill_corpus.py OUT_DIR TOKENS_H5 NUM_SEQ LS K [key=value ...]
  keys: shards (2), tau (1.0: logit_temperature), seed (0), vocab (the token file's vocab_size),
        tokenizer (the token file's tokenizer_sha256), dtype (float16 | float32)

Sequences are consecutive windows of Ls tokens of TOKENS_H5. The "teacher" is a fixed random
bigram table: logits[a, :] for the previous token a, so its top-k rows are a real (if simple)
distribution: log-softmax(logits / tau) over the full vocabulary, top k by descending log-prob.
"""
import json
import os
import sys

import h5py
import numpy as np

out, tokens_path, S, Ls, K = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
opts = dict(a.split("=", 1) for a in sys.argv[6:])
with h5py.File(tokens_path, "r") as f:
    stream = np.asarray(f["tokens"], np.int32)
    V = int(opts.get("vocab", f.attrs["vocab_size"]))
    sha = opts.get("tokenizer", f.attrs["tokenizer_sha256"])
    sha = sha.decode() if isinstance(sha, bytes) else str(sha)
tau = float(opts.get("tau", 1.0))
seed = int(opts.get("seed", 0))
n_shards = int(opts.get("shards", 2))
dtype = opts.get("dtype", "float16")
assert S * Ls <= len(stream), "token file too short"

rng = np.random.default_rng(seed)
table = rng.normal(0, 2.0, size=(V, V))          # teacher logits given the previous token
logp_table = table / tau
logp_table -= logp_table.max(1, keepdims=True)
logp_table -= np.log(np.exp(logp_table).sum(1, keepdims=True))
order = np.argsort(-logp_table, axis=1, kind="stable")[:, :K]   # [V, K]

tokens = stream[: S * Ls].reshape(S, Ls) % V
ids = order[tokens[:, :-1]]                                       # [S, Ls-1, K]
lps = np.take_along_axis(logp_table[tokens[:, :-1]], ids, axis=2)

meta = {"k": K, "vocab_size": V, "seq_len": Ls, "tokenizer_sha256": sha,
        "teacher_sha256": "bigram-test-teacher", "mode": "score", "logit_temperature": tau,
        "sample_temperature": 1.0, "sample_top_k": 0, "sample_top_p": 1.0, "seed": seed}
os.makedirs(out, exist_ok=True)
shards = []
bounds = np.linspace(0, S, n_shards + 1).astype(int)
for i in range(n_shards):
    a, b = bounds[i], bounds[i + 1]
    name = f"shard-{i:05d}.h5"
    with h5py.File(os.path.join(out, name), "w") as f:
        f["tokens"] = tokens[a:b].astype(np.int32)
        f["prompt_len"] = np.zeros(b - a, np.int32)
        f["topk_ids"] = ids[a:b].astype(np.int32)
        f["topk_logprobs"] = lps[a:b].astype(dtype)
        for key, val in meta.items():
            f.attrs[key] = np.int64(val) if isinstance(val, int) else val
    shards.append({"file": name, "sequences": int(b - a)})
manifest = dict(format="retort-distill-corpus", version=1, logprob_dtype=dtype,
                num_sequences=S, shards=shards, **meta)
with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print(f"{out}: {S} sequences of {Ls}, k={K}, V={V}, {n_shards} shards")
