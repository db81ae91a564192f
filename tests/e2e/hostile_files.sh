#!/usr/bin/env bash
# Hostile files through the real command line (seeded: HOSTILE_SEED=N picks other offsets;
# the seed and every offset are printed):
#  - a real checkpoint's model.h5, optimizer.h5, state.json and config.yaml truncated at random
#    offsets: `train --resume` and `eval` print one error line and exit 1 (eval may run clean
#    when only optimizer.h5 is hit) — never a signal (exit >= 128), never a hang (timeout);
#  - a flipped byte in model.h5: the sha256 in state.json catches it ("checksum mismatch")
#    before libhdf5 parses the file; an exported checkpoint (no state.json) cut short is a
#    "truncated or corrupt" error;
#  - flipped bytes in a corpus shard written by `retort generate`, at 32 offsets (24 of them in
#    HDF5 metadata — the bytes outside every dataset's raw data: superblock, object headers,
#    B-trees, heaps — where libhdf5 1.10 itself can crash or hang): the sha256 in manifest.json
#    refuses every one before libhdf5 parses the shard, with one line naming it, exit 1 and no
#    run directory;
#  - flipped bytes in a token file (no checksum): one error line or (a flip that lands on
#    unused bytes or keeps values in range) a clean run;
#  - out-of-range token ids and negative / overlapping doc_offsets: errors naming the file,
#    the dataset and the index.
source "$(dirname "$0")/lib.sh"
SEED=${HOSTILE_SEED:-20250611}
RANDOM=$SEED
echo "seed $SEED (HOSTILE_SEED=N for other offsets)"

tiny_tokens "$WORK/tok"
VAL=$WORK/tok/val.h5
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$VAL" --set train.steps=12
      --set checkpoint.every=6 --set eval.every=0 --set eval.max_windows=2)
retort train "${ARGS[@]}" --set "run.dir=$WORK/run" >/dev/null
CK=run/checkpoints/step_00000012
retort export "$WORK/$CK" --out "$WORK/export" >/dev/null

# outcome CMD...: runs CMD with a timeout; sets RC and fails on a hang or a signal.
outcome() {
  RC=0
  timeout 60 "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" || RC=$?
  [ "$RC" != 124 ] || fail "hang (timeout): $*"
  [ "$RC" -lt 128 ] || { cat "$WORK/err.txt" >&2; fail "killed by signal $((RC - 128)): $*"; }
}
# one_error_line PATTERN: stderr is exactly one "retort: error" line matching PATTERN.
one_error_line() {
  [ "$(wc -l <"$WORK/err.txt")" = 1 ] || { cat "$WORK/err.txt" >&2; fail "stderr is not one line"; }
  grep -qE "^retort: error: .*$1" "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; fail "stderr lacks /$1/"; }
}
# clean_error PATTERN CMD...: exit 1 with one error line matching PATTERN.
clean_error() {
  local pattern=$1; shift
  outcome "$@"
  [ "$RC" = 1 ] || { cat "$WORK/err.txt" >&2; fail "expected exit 1, got $RC: $*"; }
  one_error_line "$pattern"
  echo "  ok: $(cut -c1-150 "$WORK/err.txt")"
}
# error_or_clean_run PATTERN CMD...: exit 0, or exit 1 with one error line matching PATTERN.
error_or_clean_run() {
  local pattern=$1; shift
  outcome "$@"
  case $RC in
    0) echo "  ok: clean run" ;;
    1) one_error_line "$pattern"; echo "  ok: $(cut -c1-150 "$WORK/err.txt")" ;;
    *) cat "$WORK/err.txt" >&2; fail "exit $RC: $*" ;;
  esac
}
size_of() { stat -c %s "$1"; }
# flip FILE OFFSET: XORs the byte at OFFSET with a nonzero random mask.
flip() {
  local old new
  old=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  new=$((old ^ (RANDOM % 255 + 1)))
  printf "\\x$(printf %02x "$new")" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
R=$RETORT_BIN  # (timeout cannot run lib.sh's retort function)
RESUME=("$R" train "${ARGS[@]}" --set "run.dir=$WORK/t" --set train.steps=18 --resume)

# ---- a training checkpoint truncated at random offsets ----
for file in model.h5 model.h5 optimizer.h5 state.json config.yaml; do
  rm -rf "$WORK/t" && cp -r "$WORK/run" "$WORK/t"
  path=$WORK/t/checkpoints/step_00000012/$file
  at=$((RANDOM * 32768 + RANDOM))
  at=$((at % $(size_of "$path")))
  echo "truncate $file at $at of $(size_of "$path") bytes"
  truncate -s "$at" "$path"
  case $file in
    state.json) pattern="state.json" ;;
    *) pattern="$file: checksum mismatch" ;;
  esac
  clean_error "$pattern.*move .*step_00000012 away" "${RESUME[@]}"
  if [ $file = optimizer.h5 ]; then  # eval reads only model.h5 and config.yaml
    error_or_clean_run "$file" "$R" eval "$WORK/t" --tokens "$VAL" --max-windows 2
  else
    clean_error "$pattern" "$R" eval "$WORK/t" --tokens "$VAL" --max-windows 2
  fi
done

# ---- one flipped byte in model.h5: the checksum, not libhdf5, reports it ----
for n in 1 2; do
  rm -rf "$WORK/t" && cp -r "$WORK/run" "$WORK/t"
  path=$WORK/t/checkpoints/step_00000012/model.h5
  at=$(((RANDOM * 32768 + RANDOM) % $(size_of "$path")))
  echo "flip model.h5 byte $at"
  flip "$path" "$at"
  clean_error "model.h5: checksum mismatch" "$R" eval "$WORK/t" --tokens "$VAL" --max-windows 2
  clean_error "model.h5: checksum mismatch" "${RESUME[@]}"
done

# ---- an exported checkpoint (no checksums) cut short: libhdf5 sees the short file ----
for n in 1; do
  rm -rf "$WORK/e" && cp -r "$WORK/export" "$WORK/e"
  at=$(((RANDOM * 32768 + RANDOM) % $(size_of "$WORK/e/model.h5")))
  echo "truncate exported model.h5 at $at"
  truncate -s "$at" "$WORK/e/model.h5"
  clean_error "model.h5" "$R" eval "$WORK/e" --tokens "$VAL" --max-windows 2
done

# ---- flipped bytes in a corpus shard ----
retort generate "$TINY" --set "generate.teacher=$WORK/$CK" --set "generate.data=$WORK/tok/train.h5" \
  --set "generate.out=$WORK/corpus" --set generate.k=8 --set generate.num_sequences=16 >/dev/null
DISTILL=("$TINY" --set "data.val=$VAL" --set distill.lambda=0.5 --set train.steps=2 --set eval.every=0
         --set eval.max_windows=2 --set checkpoint.every=0)
shard=shard-00000.h5
size=$(size_of "$WORK/corpus/$shard")
# 24 offsets in the metadata (outside the datasets' raw data, as h5py locates it), 8 anywhere
offsets=$(/usr/bin/python3 - "$WORK/corpus/$shard" "$RANDOM" <<'PY'
import h5py, random, sys
rng = random.Random(int(sys.argv[2]))
with h5py.File(sys.argv[1], "r") as f:
    size = f.id.get_filesize()
    raw = [(f[n].id.get_offset(), f[n].id.get_storage_size()) for n in f]
meta = [i for i in range(size) if not any(o is not None and o <= i < o + n for o, n in raw)]
print(" ".join(str(x) for x in sorted(rng.sample(meta, 24)) + [rng.randrange(size) for _ in range(8)]))
PY
)
echo "flip $shard ($size bytes) at:$offsets"
rm -rf "$WORK/c" && cp -r "$WORK/corpus" "$WORK/c"
digest='[0-9a-f]{64}'
for at in $offsets; do
  rm -rf "$WORK/d"
  flip "$WORK/c/$shard" "$at"
  # (one process: OpenMPI need not probe the network transports, which halves its start-up)
  OMPI_MCA_pml=ob1 OMPI_MCA_btl=self \
    outcome "$R" distill "${DISTILL[@]}" --set "distill.corpus=$WORK/c" --set "run.dir=$WORK/d"
  [ "$RC" = 1 ] || { cat "$WORK/err.txt" >&2; fail "byte $at: expected exit 1, got $RC"; }
  one_error_line "c/$shard: corrupt: sha256 is $digest, manifest.json records $digest \\(damaged"
  [ ! -e "$WORK/d" ] || fail "byte $at: the refused run wrote $WORK/d"
  cp "$WORK/corpus/$shard" "$WORK/c/$shard"
done
echo "  ok: all $(echo $offsets | wc -w) flips refused: $(cut -c1-150 "$WORK/err.txt")"

# ---- flipped bytes in a token file ----
for n in 1 2 3 4 5; do
  cp "$VAL" "$WORK/flipped.h5"
  at=$(((RANDOM * 32768 + RANDOM) % $(size_of "$WORK/flipped.h5")))
  echo "flip val.h5 byte $at"
  flip "$WORK/flipped.h5" "$at"
  error_or_clean_run "flipped.h5" "$R" eval "$WORK/$CK" --tokens "$WORK/flipped.h5" --max-windows 2
done

# ---- out-of-range token ids, negative and overlapping offsets ----
# One h5py process writes every case (interpreter start-up dominates otherwise).
/usr/bin/python3 - <<'PY'
import h5py, numpy as np
ok = [i % 500 + 2 for i in range(200)]
cases = {
    "ids.h5": (ok[:17] + [600] + [3] * 182, [0, 100]),
    "neg.h5": ([-5] + [3] * 199, [0]),
    "negoff.h5": (ok, [0, 50, -3, 120]),
    "first.h5": (ok, [-1, 50]),
    "overlap.h5": (ok, [0, 120, 60, 150]),
    "beyond.h5": (ok, [0, 150, 2**62]),
}
for name, (tokens, offsets) in cases.items():
    with h5py.File(name, "w") as f:
        f["tokens"] = np.array(tokens, dtype=np.int32)
        f["doc_offsets"] = np.array(offsets, dtype=np.int64)
        f.attrs["vocab_size"] = np.int64(512); f.attrs["eos_id"] = np.int64(1); f.attrs["tokenizer_sha256"] = "none"
PY
clean_error "ids.h5: dataset 'tokens': token id 600 at index 17 outside \[0, 512\)" \
  "$R" eval "$WORK/$CK" --tokens ids.h5
clean_error "neg.h5: dataset 'tokens': token id -5 at index 0" "$R" eval "$WORK/$CK" --tokens neg.h5
clean_error "negoff.h5: dataset 'doc_offsets': decreasing at index 2 \(50 > -3\)" \
  "$R" eval "$WORK/$CK" --tokens negoff.h5
clean_error "first.h5: dataset 'doc_offsets': must start at 0, found -1" "$R" eval "$WORK/$CK" --tokens first.h5
clean_error "overlap.h5: dataset 'doc_offsets': decreasing at index 2 \(120 > 60\)" \
  "$R" train "$TINY" --set data.train=overlap.h5 --set "data.val=$VAL" --set "run.dir=$WORK/r_overlap"
clean_error "beyond.h5: dataset 'doc_offsets': value 4611686018427387904 at index 2 beyond the 200 tokens" \
  "$R" eval "$WORK/$CK" --tokens beyond.h5
echo PASS
