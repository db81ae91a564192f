#!/usr/bin/python3
"""Checks a `retort export --format hf` directory as transformers would read it.

Usage: check_hf_export.py HF_DIR TOKENS_H5 EVAL_JSON [--bf16-of HF_F32_DIR]

Written from the safetensors format and transformers' Qwen3 / Qwen2 / Llama / Mistral / SmolLM3 modeling, not from
retort's C++: model.safetensors is parsed by hand (8-byte header length, JSON header,
contiguous data), config.json is read with transformers' key names, and a float64 numpy
forward (RMSNorm, per-head q/k RMSNorm for qwen3, q/k/v biases for qwen2, rotate-half RoPE with
inv_freq = rope_theta^(-2i/head_dim), rescaled as rope_scaling's "llama3" type says, GQA,
mistral's sliding_window: query i sees key j for i - sliding_window < j <= i, smollm3's
no_rope_layers: no RoPE on a layer listed 0, SwiGLU, tied or own lm_head) gives the mean
next-token loss on EVAL_JSON's windows of TOKENS_H5 (SPEC §3), which must equal the loss
`retort eval` wrote there within 1e-6 relative. With --bf16-of, HF_DIR must instead hold
exactly the bfloat16 round-to-nearest-even of HF_F32_DIR's tensors (and say so in config.json).
Exit 0 on success, 1 with a message on failure.
"""
import json
import struct
import sys

import h5py
import numpy as np


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    if n % 8:
        fail(f"{path}: header of {n} bytes: the data does not start 8-byte aligned")
    if header.pop("__metadata__", {}).get("format") != "pt":
        fail(f"{path}: __metadata__.format is not 'pt' (transformers refuses such files)")
    data = blob[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    end = 0
    for begin, stop, name in spans:  # the safetensors library's own validation
        if begin != end:
            fail(f"{path}: {name} starts at {begin}, not at {end}")
        end = stop
    if end != len(data):
        fail(f"{path}: data is {len(data)} bytes, the header covers {end}")
    tensors = {}
    for name, v in header.items():
        begin, stop = v["data_offsets"]
        raw = data[begin:stop]
        if v["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4")
        elif v["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            fail(f"{path}: {name} has dtype {v['dtype']}")
        if a.size != int(np.prod(v["shape"])):
            fail(f"{path}: {name} holds {a.size} values for shape {v['shape']}")
        tensors[name] = (v["dtype"], a.reshape(v["shape"]))
    return tensors


def bf16_round(a):
    """float32 -> bfloat16 bits, round to nearest even (no NaNs in a model)."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def rmsnorm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def inv_freq_of(c):
    """transformers' RoPE frequencies: default, or rope_scaling's rope_type "llama3" (Llama 3.1)."""
    hd = c["head_dim"]
    inv_freq = 1.0 / c["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    rs = c.get("rope_scaling")
    if not rs:
        return inv_freq
    if rs["rope_type"] != "llama3":
        fail(f"config.json: rope_scaling {rs} is not llama3")
    old, factor = rs["original_max_position_embeddings"], rs["factor"]
    low, high = rs["low_freq_factor"], rs["high_freq_factor"]
    wavelen = 2 * np.pi / inv_freq
    scaled = np.where(wavelen > old / low, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return np.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)


def rope(x, inv_freq):  # x: [heads, T, hd]
    t = x.shape[-2]
    hd = x.shape[-1]
    ang = np.outer(np.arange(t, dtype=np.float64), inv_freq)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rotated = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
    return x * cos + rotated * sin


def window_loss(c, w, tokens):
    """Mean CE of tokens[1:] given tokens[:-1] under the transformers model (c, w)."""
    arch = c["model_type"]
    H, Hkv, hd, eps = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["rms_norm_eps"]
    inp, tgt = tokens[:-1], tokens[1:]
    T = len(inp)
    x = w["model.embed_tokens.weight"][inp]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    if arch == "mistral" and c.get("sliding_window"):  # keys at or beyond the window: hidden
        mask = mask + np.tril(np.full((T, T), -np.inf), -c["sliding_window"])
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        def proj(name, heads):  # nn.Linear: h Wᵀ (+ b in Qwen2's q, k, v projections)
            y = h @ w[p + f"self_attn.{name}_proj.weight"].T
            if arch == "qwen2":
                y = y + w[p + f"self_attn.{name}_proj.bias"]
            return y.reshape(T, heads, hd).transpose(1, 0, 2)
        q, k, v = proj("q", H), proj("k", Hkv), proj("v", Hkv)
        if arch == "qwen3":
            q = rmsnorm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, w[p + "self_attn.k_norm.weight"], eps)
        if arch != "smollm3" or c["no_rope_layers"][i]:
            q, k = rope(q, inv_freq_of(c)), rope(k, inv_freq_of(c))
        k, v = np.repeat(k, H // Hkv, 0), np.repeat(v, H // Hkv, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        x = x + a.transpose(1, 0, 2).reshape(T, H * hd) @ w[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    logits = x @ head.T
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
    return float(np.mean(lse - logits[np.arange(T), tgt]))


def expected_names(c):
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    if not c["tie_word_embeddings"]:
        names.add("lm_head.weight")
    per_layer = ["input_layernorm", "post_attention_layernorm"] + \
        [f"self_attn.{m}_proj" for m in "qkvo"] + [f"mlp.{m}_proj" for m in ("gate", "up", "down")]
    if c["model_type"] == "qwen3":
        per_layer += ["self_attn.q_norm", "self_attn.k_norm"]
    biases = [f"self_attn.{m}_proj.bias" for m in "qkv"] if c["model_type"] == "qwen2" else []
    return names | {f"model.layers.{i}.{n}" for i in range(c["num_hidden_layers"])
                    for n in [m + ".weight" for m in per_layer] + biases}


def main():
    hf_dir, tokens_h5, eval_json = sys.argv[1:4]
    c = json.load(open(f"{hf_dir}/config.json"))
    arch = {"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM",
            "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
            "smollm3": "SmolLM3ForCausalLM"}.get(c["model_type"])
    if c["architectures"] != [arch]:
        fail(f"config.json: architectures {c['architectures']} for model_type {c['model_type']}")
    st = read_safetensors(f"{hf_dir}/model.safetensors")
    if set(st) != expected_names(c):
        fail(f"tensor names differ from transformers': {sorted(set(st) ^ expected_names(c))}")

    if len(sys.argv) == 6 and sys.argv[4] == "--bf16-of":
        ref = read_safetensors(f"{sys.argv[5]}/model.safetensors")
        if c["torch_dtype"] != "bfloat16":
            fail(f"config.json: torch_dtype {c['torch_dtype']} for a bfloat16 export")
        for name, (dtype, a) in st.items():
            want = bf16_round(ref[name][1])
            if dtype != "BF16" or not np.array_equal(a.view(np.uint32) >> 16, want):
                fail(f"{name}: not the bfloat16 rounding of the float32 export")
        print(f"ok: {len(st)} tensors are the bfloat16 rounding of the float32 export")
        return

    w = {name: a.astype(np.float64) for name, (_, a) in st.items()}
    d, V = c["hidden_size"], c["vocab_size"]
    if w["model.embed_tokens.weight"].shape != (V, d):
        fail(f"embed_tokens {w['model.embed_tokens.weight'].shape} for vocab {V}, hidden {d}")
    ev = json.load(open(eval_json))
    T = ev["tokens"] // ev["windows"]
    toks = h5py.File(tokens_h5, "r")["tokens"][:]
    losses = [window_loss(c, w, toks[i * T:i * T + T + 1]) for i in range(ev["windows"])]
    ref = float(np.mean(losses))
    rel = abs(ref - ev["loss"]) / abs(ref)
    print(f"transformers-semantics loss {ref:.6f}, retort eval {ev['loss']:.6f} ({rel:.2e} relative)")
    if rel > 1e-6:
        fail(f"loss differs by {rel:.2e} relative")


main()
