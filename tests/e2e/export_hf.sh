#!/usr/bin/env bash
# `retort export --format hf`: a transformers directory whose model gives retort's own loss.
# check_hf_export.py reads model.safetensors by hand and runs a float64 forward with
# transformers' Qwen3 / Qwen2 / Llama / Mistral / SmolLM3 semantics from config.json alone; its mean loss on the windows
# `retort eval` used must match retort's within 1e-6 relative (a wrong RoPE pairing, a missing
# q/k norm or the wrong head move it by 2e-4 to 3e-2 on these trained models). Then:
# bfloat16 is exactly the rounded float32, the tokenizer travels unchanged (adding <s> only when
# the data had it), and bad input
# (an unknown format, hf flags without it, a tokenizer larger than the model, an existing
# --out) is one error line with nothing written.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
D=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" --set train.lr=1e-2
   --set eval.every=0)
check() { /usr/bin/python3 "$SRC/tests/e2e/check_hf_export.py" "$@"; }
# family NAME EXPR EXPECTED SETTINGS...: train tiny with SETTINGS, export it, check the export's
# loss against `retort eval` and its config.json (EXPR, printed) against EXPECTED.
family() {
  local name=$1 expr=$2 expected=$3; shift 3
  retort train "${D[@]}" --set "run.dir=$WORK/$name" "$@" >/dev/null
  retort export "$WORK/$name" --out "$WORK/$name-hf" --format hf >/dev/null
  retort eval "$WORK/$name" --tokens "$WORK/tok/val.h5" --out "$WORK/$name-eval.json" >/dev/null
  check "$WORK/$name-hf" "$WORK/tok/val.h5" "$WORK/$name-eval.json"
  [ "$(json "$WORK/$name-hf/config.json" "$expr")" = "$expected" ] ||
    fail "$name config.json: $(cat "$WORK/$name-hf/config.json")"
}

# 1. tiny as it is: Qwen3 (qk_norm), GQA (4 heads, 2 kv heads), tied embeddings.
retort train "${D[@]}" --set "run.dir=$WORK/qwen3" >/dev/null
retort export "$WORK/qwen3" --out "$WORK/qwen3-hf" --format hf --tokenizer "$WORK/tok/tokenizer.model" |
  tee "$WORK/export.log"
grep -q "Hugging Face safetensors, float32, 24 tensors" "$WORK/export.log" || fail "export summary line"
retort eval "$WORK/qwen3" --tokens "$WORK/tok/val.h5" --out "$WORK/qwen3-eval.json" >/dev/null
check "$WORK/qwen3-hf" "$WORK/tok/val.h5" "$WORK/qwen3-eval.json"
[ "$(json "$WORK/qwen3-hf/config.json" "j['architectures'][0], j['tie_word_embeddings'], j['num_key_value_heads'], j['eos_token_id']")" = \
  "Qwen3ForCausalLM True 2 2" ] || fail "qwen3 config.json: $(cat "$WORK/qwen3-hf/config.json")"
cmp "$WORK/tok/tokenizer.model" "$WORK/qwen3-hf/tokenizer.model" || fail "tokenizer.model changed on the way"
[ "$(json "$WORK/qwen3-hf/tokenizer_config.json" "j['tokenizer_class'], j['add_bos_token'], j['eos_token']")" = \
  "LlamaTokenizer False </s>" ] || fail "tokenizer_config.json: $(cat "$WORK/qwen3-hf/tokenizer_config.json")"
# Data tokenized with <s> before every document (tokenize.bos_token, recorded in tokenize.json
# beside the tokenizer.model): the LlamaTokenizer adds it too.
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$WORK/tok-bos" \
  --set "tokenize.bos_token=<s>" >/dev/null
retort export "$WORK/qwen3" --out "$WORK/qwen3-bos" --format hf --tokenizer "$WORK/tok-bos/tokenizer.model" >/dev/null
[ "$(json "$WORK/qwen3-bos/tokenizer_config.json" "j['add_bos_token'], j['bos_token']")" = "True <s>" ] ||
  fail "bos tokenizer_config.json: $(cat "$WORK/qwen3-bos/tokenizer_config.json")"
[ "$(json "$WORK/qwen3-bos/config.json" "j['bos_token_id']")" = 1 ] || fail "bos config.json"

# 2. bfloat16: every tensor the round-to-nearest-even of the float32 export's.
retort export "$WORK/qwen3" --out "$WORK/qwen3-bf16" --format hf --dtype bfloat16 >/dev/null
check "$WORK/qwen3-bf16" "$WORK/tok/val.h5" "$WORK/qwen3-eval.json" --bf16-of "$WORK/qwen3-hf"
[ ! -e "$WORK/qwen3-bf16/tokenizer.model" ] || fail "a tokenizer appeared without --tokenizer"

# 3. Llama: no qk-norm, untied lm_head, no GQA, another RoPE base, Llama 3.1's RoPE scaling
# (its three regimes: at head_dim 16 and original context 48, wavelengths 6, 20 and 63+).
retort train "${D[@]}" --set "run.dir=$WORK/llama" --set model.qk_norm=false \
  --set model.tie_embeddings=false --set model.n_kv_heads=4 --set model.rope_theta=10000 \
  --set model.rope_scaling=llama3 --set model.rope_scaling_factor=32 --set model.rope_original_max_position=48 >/dev/null
retort export "$WORK/llama/checkpoints" --out "$WORK/llama-hf" --format hf >/dev/null
retort eval "$WORK/llama" --tokens "$WORK/tok/val.h5" --out "$WORK/llama-eval.json" >/dev/null
check "$WORK/llama-hf" "$WORK/tok/val.h5" "$WORK/llama-eval.json"
[ "$(json "$WORK/llama-hf/config.json" "j['architectures'][0], j['tie_word_embeddings'], j['rope_theta'], 'eos_token_id' in j")" = \
  "LlamaForCausalLM False 10000.0 False" ] || fail "llama config.json: $(cat "$WORK/llama-hf/config.json")"

# 4. Qwen2: q, k, v biases (trained away from their zero init), tied, no qk-norm. A model with
# both qk-norm and biases has no transformers class: refused.
family qwen2 "j['architectures'][0], j['model_type'], 'attention_bias' in j, j['use_sliding_window']" \
  "Qwen2ForCausalLM qwen2 False False" --set model.qk_norm=false --set model.qkv_bias=true
retort train "${D[@]}" --set "run.dir=$WORK/both" --set model.qkv_bias=true --set train.steps=1 >/dev/null
expect_fail 1 "model.qk_norm and model.qkv_bias together: no transformers model has both" \
  retort export "$WORK/both" --out "$WORK/x" --format hf

# 4b. Mistral: Llama with a sliding window of 5 tokens (of 64: it binds for every token past
# the fifth). The same export read with a window of 4 or 6 gives 2e-2 / 6e-2 another loss.
# Qwen's windows are per layer: a window with qk-norm is refused.
family mistral "j['architectures'][0], j['model_type'], j['sliding_window']" "MistralForCausalLM mistral 5" \
  --set model.qk_norm=false --set model.sliding_window=5
retort train "${D[@]}" --set "run.dir=$WORK/qwen3-window" --set model.sliding_window=5 --set train.steps=1 >/dev/null
expect_fail 1 "model.sliding_window with model.qk_norm: transformers has no model with both" \
  retort export "$WORK/qwen3-window" --out "$WORK/x" --format hf

# 4c. SmolLM3: Llama with NoPE layers (every 2nd of tiny's 2: layer 1 unrotated).
family smollm3 "j['architectures'][0], j['no_rope_layers'], j['no_rope_layer_interval']" \
  "SmolLM3ForCausalLM [1, 0] 2" --set model.qk_norm=false --set model.no_rope_interval=2

# 5. Bad input: one line, the right exit code, nothing written.
expect_fail 2 "usage error: --format: xx not in" retort export "$WORK/qwen3" --out "$WORK/x" --format xx
expect_fail 2 "config error: --dtype and --tokenizer apply to --format hf only" \
  retort export "$WORK/qwen3" --out "$WORK/x" --dtype bfloat16
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set tokenize.vocab_size=600 \
  --set "tokenize.out=$WORK/tok600" >/dev/null
expect_fail 1 "tok600/tokenizer.model: 600 pieces, more than the model's vocab_size 512" \
  retort export "$WORK/qwen3" --out "$WORK/x" --format hf --tokenizer "$WORK/tok600/tokenizer.model"
expect_fail 1 "val.h5: cannot load tokenizer model" \
  retort export "$WORK/qwen3" --out "$WORK/x" --format hf --tokenizer "$WORK/tok/val.h5"
before=$(cd "$WORK/qwen3-hf" && sha256sum * | sha256sum)
expect_fail 1 "qwen3-hf: already exists; export never overwrites" \
  retort export "$WORK/llama" --out "$WORK/qwen3-hf" --format hf
[ "$(cd "$WORK/qwen3-hf" && sha256sum * | sha256sum)" = "$before" ] || fail "an existing export was changed"
[ ! -e "$WORK/x" ] && ! ls "$WORK" | grep -q tmp- || fail "left behind: $(ls "$WORK")"
echo PASS
