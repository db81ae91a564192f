# Helpers for the end-to-end tests (sourced). Environment: RETORT_BIN, RETORT_SOURCE_DIR, WORK.
set -euo pipefail
: "${RETORT_BIN:?}" "${RETORT_SOURCE_DIR:?}" "${WORK:?}"
SRC=$RETORT_SOURCE_DIR
TINY=$SRC/configs/tiny.yaml
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }
retort() { "$RETORT_BIN" "$@"; }

# expect_fail CODE PATTERN CMD...: CMD must exit with CODE and print PATTERN (grep -E) on stderr
# as one line.
expect_fail() {
  local code=$1 pattern=$2; shift 2
  local rc=0
  "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" || rc=$?
  [ "$rc" = "$code" ] || { cat "$WORK/err.txt" >&2; fail "expected exit $code, got $rc: $*"; }
  grep -qE "$pattern" "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; fail "stderr lacks /$pattern/: $*"; }
  echo "ok: exit $code /$pattern/"
}

# json FILE EXPR: evaluates a Python expression over the parsed JSON `j`.
json() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# tiny_tokens DIR: a small synthetic corpus tokenized into DIR (tokenizer.model, train.h5, val.h5).
tiny_tokens() {
  python3 "$SRC/tests/e2e/make_corpus.py" "$WORK/corpus" 40 >/dev/null
  retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$1" >/dev/null
}
