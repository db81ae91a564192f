#!/usr/bin/env bash
# A Hugging Face transformers directory as a checkpoint (core/hf_checkpoint.h): what
# `export --format hf` wrote reads back bitwise (and `info` gives its model's counts) (eval's loss identical, exported back to
# model.h5 byte-identical) and its tokenizer.model encodes text as the run's did; bfloat16 weights read as their float32 values; the weights split
# over two files by model.safetensors.index.json read the same; a tied model that stores its
# lm_head anyway ignores it, as transformers does (with a warning when it differs); it serves as generate's teacher (the same
# corpus as from the run itself, teacher_sha256 that of model.safetensors), as does a teacher
# whose checkpoint is sharded (trained with fsdp); the same directory called a Mistral model (no
# sliding window) reads as the same model, as does one with Llama 3.1's RoPE scaling; a
# Mistral with a window that binds reads back as its run; and what retort cannot run exactly
# (another model_type, biases, other RoPE scaling, Qwen's per-layer windows, a tensor the model
# lacks) is one error line.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
D=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" --set eval.every=0)
retort train "${D[@]}" --set "run.dir=$WORK/run" --set train.steps=20 >/dev/null
retort export "$WORK/run" --out "$WORK/hf" --format hf >/dev/null
retort export "$WORK/run" --out "$WORK/hf-bf16" --format hf --dtype bfloat16 >/dev/null
loss() { retort eval "$1" --tokens "$WORK/tok/val.h5" | json /dev/stdin "j['loss']"; }

# 1. Round trip: the same loss to the last bit; back to model.h5 byte for byte.
[ "$(loss "$WORK/run")" = "$(loss "$WORK/hf")" ] || fail "eval of the transformers dir differs"
retort export "$WORK/hf" --out "$WORK/back" >/dev/null
cmp "$WORK/run/checkpoints/step_00000020/model.h5" "$WORK/back/model.h5" || fail "model.h5 changed on the round trip"
python3 -c "import sys; a, b = map(float, sys.argv[1:]); assert abs(a - b) < 1e-2 * a, (a, b)" \
  "$(loss "$WORK/run")" "$(loss "$WORK/hf-bf16")" || fail "bfloat16 weights give another loss"
echo "ok: round trip bitwise; bfloat16 loss $(loss "$WORK/hf-bf16") vs $(loss "$WORK/run")"
# info reads a checkpoint's or a transformers dir's model (here: tiny's, 131 456 parameters)
for d in "$WORK/run" "$WORK/hf"; do
  [ "$(retort info "$d" --json | json /dev/stdin "j['params'], j['flops_per_token_exact']")" = \
    "$(retort info "$TINY" --json | json /dev/stdin "j['params'], j['flops_per_token_exact']")" ] || fail "info $d"
done

# The tokenizer of a transformers directory encodes new text (tokenize.tokenizer): the same
# datasets as the run's own tokenizer gave; a directory without one is one line.
retort export "$WORK/run" --out "$WORK/hf-tok" --format hf --tokenizer "$WORK/tok/tokenizer.model" >/dev/null
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$WORK/tok2" \
  --set "tokenize.tokenizer=$WORK/hf-tok" >/dev/null
for f in tokenizer.model train.h5 val.h5; do cmp "$WORK/tok/$f" "$WORK/tok2/$f" || fail "tokenize.tokenizer: $f differs"; done
# tokenize.bos_token: the same documents, each after <s> (id 1); a tokenizer trained here has no other
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$WORK/tok-bos" \
  --set "tokenize.tokenizer=$WORK/hf-tok" --set "tokenize.bos_token=<s>" >/dev/null
/usr/bin/python3 - "$WORK/tok2" "$WORK/tok-bos" <<'PY' || fail "tokenize.bos_token=<s>"
import sys
import h5py, numpy as np
for split in ("train", "val"):
    a, b = (h5py.File(f"{d}/{split}.h5") for d in sys.argv[1:])
    ta, oa = a["tokens"][:], list(a["doc_offsets"][:]) + [len(a["tokens"])]
    docs = [np.concatenate([[1], ta[s:e]]) for s, e in zip(oa, oa[1:])]
    assert np.array_equal(b["tokens"][:], np.concatenate(docs)), split
    assert np.array_equal(b["doc_offsets"][:], np.cumsum([0] + [len(d) for d in docs[:-1]])), split
print("ok: tokenize.bos_token=<s> puts id 1 before every document")
PY
expect_fail 2 "key 'tokenize.bos_token': '<|begin_of_text|>' is not a piece of .*/hf-tok/tokenizer.model" \
  retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$WORK/tok4" \
  --set "tokenize.tokenizer=$WORK/hf-tok" --set "tokenize.bos_token=<|begin_of_text|>"
expect_fail 2 "key 'tokenize.bos_token': '<x>': a tokenizer trained here has <s> \(id 1\) and no other" \
  retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$WORK/tok4" --set "tokenize.bos_token=<x>"
[ ! -e "$WORK/tok4" ] || fail "a refused tokenize.bos_token wrote $WORK/tok4"
expect_fail 2 "key 'tokenize.tokenizer': .*/hf holds neither a tokenizer.model nor a tokenizer.json" \
  retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$WORK/tok3" --set "tokenize.tokenizer=$WORK/hf"
[ ! -e "$WORK/tok3" ] || fail "a refused tokenize.tokenizer wrote $WORK/tok3"

# 2. Sharded safetensors (model.safetensors.index.json), and a tied model's stored lm_head.
PYTHONPATH="$SRC/tests/e2e" /usr/bin/python3 - "$WORK/hf" "$WORK" <<'PY'
import json, os, shutil, sys
from safetensors_io import read, write
src, work = sys.argv[1], sys.argv[2]
tensors = read(f"{src}/model.safetensors")
names = sorted(tensors)
os.makedirs(f"{work}/split")
shutil.copy(f"{src}/config.json", f"{work}/split")
parts = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
for f, ns in parts.items():
    write(f"{work}/split/{f}", {k: tensors[k] for k in ns})
json.dump({"metadata": {}, "weight_map": {k: f for f, ns in parts.items() for k in ns}},
          open(f"{work}/split/model.safetensors.index.json", "w"))
for name, embed in (("head", tensors["model.embed_tokens.weight"]),
                    ("badhead", (tensors["model.embed_tokens.weight"][0], bytes(len(tensors["model.embed_tokens.weight"][1]))))):
    os.makedirs(f"{work}/{name}")
    shutil.copy(f"{src}/config.json", f"{work}/{name}")
    write(f"{work}/{name}/model.safetensors", dict(tensors, **{"lm_head.weight": embed}))
PY
[ "$(loss "$WORK/run")" = "$(loss "$WORK/split")" ] || fail "the split safetensors read differently"
# MistralForCausalLM is LlamaForCausalLM with an optional sliding window (tiny without qk-norm)
retort train "${D[@]}" --set "run.dir=$WORK/llama" --set train.steps=5 --set model.qk_norm=false >/dev/null
retort export "$WORK/llama" --out "$WORK/mistral" --format hf >/dev/null
/usr/bin/python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c.update(model_type='mistral', architectures=['MistralForCausalLM'], sliding_window=None); json.dump(c, open(p,'w'))" "$WORK/mistral/config.json"
[ "$(loss "$WORK/llama")" = "$(loss "$WORK/mistral")" ] || fail "the model read as mistral differs"
# Phi3ForCausalLM (Phi-3, Phi-4) is Llama with q, k, v stored as one qkv_proj and gate, up as one
# gate_up_proj, read as their row blocks; a fused tensor of the wrong size is one line
PYTHONPATH="$SRC/tests/e2e" /usr/bin/python3 - "$WORK/mistral" "$WORK/phi3" <<'PY'
import json, os, sys
from safetensors_io import read, write
src, dst = sys.argv[1], sys.argv[2]
t, out = read(f"{src}/model.safetensors"), {}
def fuse(names):  # row blocks, one after another: the bytes concatenated
    metas = [t[n][0] for n in names]
    shape = [sum(m["shape"][0] for m in metas), metas[0]["shape"][1]]
    return dict(metas[0], shape=shape), b"".join(t[n][1] for n in names)
for name in t:
    if name.endswith("self_attn.q_proj.weight"):
        p = name[:-len("q_proj.weight")]
        out[p + "qkv_proj.weight"] = fuse([p + m + "_proj.weight" for m in "qkv"])
    elif name.endswith("mlp.gate_proj.weight"):
        p = name[:-len("gate_proj.weight")]
        out[p + "gate_up_proj.weight"] = fuse([p + m + "_proj.weight" for m in ("gate", "up")])
    elif not any(name.endswith(f"{m}_proj.weight") for m in ("q", "k", "v", "gate", "up")):
        out[name] = t[name]
os.makedirs(dst)
write(f"{dst}/model.safetensors", out)
c = json.load(open(f"{src}/config.json"))
c.update(model_type="phi3", architectures=["Phi3ForCausalLM"], sliding_window=None, partial_rotary_factor=1.0)
json.dump(c, open(f"{dst}/config.json", "w"))
PY
[ "$(loss "$WORK/llama")" = "$(loss "$WORK/phi3")" ] || fail "the model read as phi3 differs"
rm -rf "$WORK/bad" && cp -r "$WORK/phi3" "$WORK/bad"
/usr/bin/python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['num_key_value_heads']=1; json.dump(c, open(p,'w'))" "$WORK/bad/config.json"
expect_fail 1 "bad/model.safetensors: tensor 'model.layers.0.self_attn.qkv_proj.weight' has shape \[128, 64\], the model needs \[96, 64\]" \
  retort eval "$WORK/bad" --tokens "$WORK/tok/val.h5"
# Llama 3.1's RoPE scaling (rope_scaling: llama3) is written to config.json and read back
retort train "${D[@]}" --set "run.dir=$WORK/llama31" --set train.steps=5 --set model.qk_norm=false \
  --set model.rope_scaling=llama3 --set model.rope_scaling_factor=32 --set model.rope_original_max_position=24 >/dev/null
retort export "$WORK/llama31" --out "$WORK/hf-llama31" --format hf >/dev/null
[ "$(json "$WORK/hf-llama31/config.json" "sorted(j['rope_scaling'].items())")" = \
  "[('factor', 32.0), ('high_freq_factor', 4.0), ('low_freq_factor', 1.0), ('original_max_position_embeddings', 24), ('rope_type', 'llama3')]" ] \
  || fail "config.json rope_scaling: $(json "$WORK/hf-llama31/config.json" "j['rope_scaling']")"
[ "$(loss "$WORK/llama31")" = "$(loss "$WORK/hf-llama31")" ] || fail "the llama3-scaled model read back differs"
# Qwen2 (Qwen2.5): q, k, v biases, read back as model.qkv_bias from model_type qwen2
retort train "${D[@]}" --set "run.dir=$WORK/qwen2" --set train.steps=5 --set model.qk_norm=false \
  --set model.qkv_bias=true >/dev/null
retort export "$WORK/qwen2" --out "$WORK/hf-qwen2" --format hf >/dev/null
[ "$(loss "$WORK/qwen2")" = "$(loss "$WORK/hf-qwen2")" ] || fail "the qwen2 model read back differs"
# Mistral with a window that binds (5 of tiny's 64 positions): exported as mistral, read back
# as model.sliding_window; the Llama export relabelled with a window is another model
retort train "${D[@]}" --set "run.dir=$WORK/windowed" --set train.steps=5 --set model.qk_norm=false \
  --set model.sliding_window=5 >/dev/null
retort export "$WORK/windowed" --out "$WORK/hf-windowed" --format hf >/dev/null
[ "$(json "$WORK/hf-windowed/config.json" "j['model_type'], j['sliding_window']")" = "mistral 5" ] ||
  fail "windowed config.json: $(cat "$WORK/hf-windowed/config.json")"
[ "$(loss "$WORK/windowed")" = "$(loss "$WORK/hf-windowed")" ] || fail "the windowed model read back differs"
rm -rf "$WORK/mistral8" && cp -r "$WORK/mistral" "$WORK/mistral8"
/usr/bin/python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['sliding_window']=8; json.dump(c, open(p,'w'))" "$WORK/mistral8/config.json"
[ "$(loss "$WORK/llama")" != "$(loss "$WORK/mistral8")" ] || fail "a binding sliding_window changed nothing"
# SmolLM3: NoPE layers, read back as model.no_rope_interval
retort train "${D[@]}" --set "run.dir=$WORK/nope" --set train.steps=5 --set model.qk_norm=false \
  --set model.no_rope_interval=2 >/dev/null
retort export "$WORK/nope" --out "$WORK/hf-nope" --format hf >/dev/null
[ "$(loss "$WORK/nope")" = "$(loss "$WORK/hf-nope")" ] || fail "the smollm3 model read back differs"
[ "$(loss "$WORK/run")" = "$(loss "$WORK/head")" ] || fail "a stored copy of the tied head changed the model"
retort eval "$WORK/badhead" --tokens "$WORK/tok/val.h5" 2>"$WORK/badhead.err" >"$WORK/badhead.json"
grep -q "warning: .*badhead/model.safetensors: lm_head.weight differs from model.embed_tokens.weight; config.json ties them" \
  "$WORK/badhead.err" || fail "no warning for an unused, different lm_head: $(cat "$WORK/badhead.err")"
[ "$(loss "$WORK/run")" = "$(json "$WORK/badhead.json" "j['loss']")" ] || fail "a tied model used its stored lm_head"

# 3. A teacher for generate: the same corpus as from the run itself; a sharded teacher too.
G=("$TINY" --set "generate.data=$WORK/tok/train.h5" --set generate.k=8 --set generate.num_sequences=16)
retort generate "${G[@]}" --set "generate.teacher=$WORK/run" --set "generate.out=$WORK/c-run" >/dev/null
retort generate "${G[@]}" --set "generate.teacher=$WORK/split" --set "generate.out=$WORK/c-hf" >/dev/null
OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2 "$RETORT_BIN" train "${D[@]}" \
  --set "run.dir=$WORK/fsdp" --set train.steps=20 --set parallel.fsdp=2 >/dev/null
ls "$WORK/fsdp/checkpoints/step_00000020"/shard-*.h5 >/dev/null || fail "the fsdp checkpoint is not sharded"
retort generate "${G[@]}" --set "generate.teacher=$WORK/fsdp" --set "generate.out=$WORK/c-fsdp" >/dev/null
# a Qwen2 teacher (q, k, v biases) and a windowed one sampling through the KV cache: the same
# corpus either way
for t in qwen2 hf-qwen2 windowed hf-windowed; do
  retort generate "${G[@]}" --set generate.mode=sample --set generate.prompt_len=4 --set generate.seq_len=12 \
    --set "generate.teacher=$WORK/$t" --set "generate.out=$WORK/c-$t" >/dev/null
done
# The teacher's tokenizer must be the data's: a transformers dir's tokenizer.model (a copy of the
# data's), a checkpoint's through its config's data files; other ids are one line, exit 2.
retort generate "${G[@]}" --set "generate.teacher=$WORK/hf-tok" --set "generate.out=$WORK/c-tok" >/dev/null
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$WORK/tok400" \
  --set tokenize.vocab_size=400 >/dev/null
for t in "hf-tok|hf-tok/tokenizer.model" "run|tok/val.h5"; do
  expect_fail 2 "tokenizer mismatch: .*/${t#*|} has tokenizer_sha256 [0-9a-f]{64} but .*/tok400/train.h5 has [0-9a-f]{64} \(the teacher reads the data in its own tokenizer's ids\)" \
    retort generate "${G[@]}" --set "generate.teacher=$WORK/${t%%|*}" --set "generate.data=$WORK/tok400/train.h5" \
    --set "generate.out=$WORK/c-bad"
done
[ ! -e "$WORK/c-bad" ] || fail "a refused generate wrote $WORK/c-bad"
/usr/bin/python3 - "$WORK" <<'PY'
import glob, hashlib, json, sys
import h5py, numpy as np
w = sys.argv[1]
def shard(c):
    return h5py.File(glob.glob(f"{w}/{c}/shard-*.h5")[0], "r")
a, b, f = shard("c-run"), shard("c-hf"), shard("c-fsdp")
for ds in ("tokens", "topk_ids", "topk_logprobs"):
    assert np.array_equal(a[ds][:], b[ds][:]), ds
    assert np.array_equal(shard("c-qwen2")[ds][:], shard("c-hf-qwen2")[ds][:]), "qwen2 " + ds
    assert np.array_equal(shard("c-windowed")[ds][:], shard("c-hf-windowed")[ds][:]), "windowed " + ds
digests = "".join(hashlib.sha256(open(p, "rb").read()).hexdigest()
                  for p in sorted(glob.glob(f"{w}/split/model-*.safetensors")))
assert json.load(open(f"{w}/c-hf/manifest.json"))["teacher_sha256"] == hashlib.sha256(digests.encode()).hexdigest()
shards = sorted(glob.glob(f"{w}/fsdp/checkpoints/step_00000020/shard-*.h5"))
digests = "".join(hashlib.sha256(open(p, "rb").read()).hexdigest() for p in shards)
assert f.attrs["teacher_sha256"] == hashlib.sha256(digests.encode()).hexdigest()
print("ok: the transformers teachers' corpora (qwen3 scored, qwen2 and mistral sampled) are their runs'; "
      "sharded teachers' teacher_sha256 as documented")
PY

# 4. What retort cannot run exactly: one line naming config.json and the key.
for edit in "model_type=gemma2|model_type 'gemma2'" "attention_bias=true|key 'attention_bias': biases" \
            "rope_scaling={\"rope_type\": \"yarn\", \"factor\": 4.0}|key 'rope_scaling': RoPE scaling 'yarn'" \
            "hidden_act=gelu|key 'hidden_act': 'gelu'"; do
  rm -rf "$WORK/bad" && cp -r "$WORK/hf" "$WORK/bad"
  /usr/bin/python3 - "$WORK/bad/config.json" "${edit%%|*}" <<'PY'
import json, sys
path, (key, value) = sys.argv[1], sys.argv[2].split("=", 1)
c = json.load(open(path))
try:
    c[key] = json.loads(value)
except ValueError:
    c[key] = value
json.dump(c, open(path, "w"))
PY
  expect_fail 1 "bad/config.json: ${edit#*|}" retort eval "$WORK/bad" --tokens "$WORK/tok/val.h5"
done
rm -rf "$WORK/bad" && cp -r "$WORK/hf-qwen2" "$WORK/bad"
/usr/bin/python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c.update(use_sliding_window=True, sliding_window=8); json.dump(c, open(p,'w'))" "$WORK/bad/config.json"
expect_fail 1 "bad/config.json: key 'use_sliding_window': a sliding window on some layers" \
  retort eval "$WORK/bad" --tokens "$WORK/tok/val.h5"
rm -rf "$WORK/bad" && cp -r "$WORK/hf" "$WORK/bad"
/usr/bin/python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['num_hidden_layers']=1; json.dump(c, open(p,'w'))" "$WORK/bad/config.json"
expect_fail 1 "bad/model.safetensors: unexpected tensor 'model.layers.1.*' \(does config.json match the weights\?\)" \
  retort eval "$WORK/bad" --tokens "$WORK/tok/val.h5"
/usr/bin/python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['model_type']='qwen2'; json.dump(c, open(p,'w'))" "$WORK/bad/config.json"
expect_fail 1 "bad/model.safetensors: no tensor 'model.layers.0.self_attn.q_proj.bias' \(does config.json match the weights\?\)" \
  retort eval "$WORK/bad" --tokens "$WORK/tok/val.h5"
echo PASS
