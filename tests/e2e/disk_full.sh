#!/usr/bin/env bash
# Disk full and read-only output, on a real tmpfs (mounted here; skipped, exit 77, where
# mounting is not permitted). For `retort train` and `retort generate` (and `export --format hf`
# in 5., `tokenize` in 6.):
#   - the write that fills the disk, or that meets a read-only remount, ends the job with ONE
#     error line naming the file and the OS reason, exit 1;
#   - no temporary is left behind, the earlier checkpoint (keep_last 1: the only one) or the
#     earlier shards stay valid, and a corpus gets no manifest;
#   - once there is space (or the disk is writable again) the same command with --resume
#     (generate: the same command) finishes, bitwise identical to an uninterrupted run.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip "needs root to mount a tmpfs"
M=$(mktemp -d /tmp/retort-diskfull.XXXXXX)
mount -t tmpfs -o size=2m tmpfs "$M" 2>"$WORK/mount.err" ||
  { rmdir "$M"; skip "cannot mount a tmpfs here: $(cat "$WORK/mount.err")"; }
cleanup() { umount "$M" 2>/dev/null || umount -l "$M" 2>/dev/null || true; rmdir "$M" 2>/dev/null || true; }
trap cleanup EXIT

tiny_tokens "$WORK/tok"
T=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
   --set eval.every=0 --set eval.max_windows=2 --set checkpoint.keep_last=1)

# one_error_line LOG PATTERN: the job printed exactly one error line, and it matches PATTERN.
one_error_line() {
  local n; n=$(grep -c "^retort: error" "$1" || true)
  [ "$n" = 1 ] || { cat "$1" >&2; fail "expected one error line, got $n"; }
  grep -Eq "^retort: error.*$2" "$1" || { cat "$1" >&2; fail "error line lacks /$2/"; }
  echo "ok: $(grep '^retort: error' "$1" | cut -c1-220)"
}
# only_checkpoint RUN STEP: checkpoints/ holds exactly step STEP (no temporaries, nothing newer).
only_checkpoint() {
  local have; have=$(ls "$1/checkpoints")
  [ "$have" = "$(printf 'step_%08d' "$2")" ] || fail "checkpoints/ holds: $have"
}

# 1. Training fills the disk: a checkpoint is ~1.6 MB (model.h5 + optimizer.h5), so step 10's
#    fits in 2 MB and step 20's does not.
retort train "${T[@]}" --set train.steps=30 --set "run.dir=$WORK/whole" >/dev/null
rc=0
retort train "${T[@]}" --set train.steps=30 --set "run.dir=$M/run" >"$WORK/full.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$WORK/full.log" >&2; fail "disk full: exit $rc, expected 1"; }
one_error_line "$WORK/full.log" "checkpoint at step 20 not written \(step_00000010 is kept\): $M/run/checkpoints/step_00000020\.tmp-[0-9]+/[a-z]+\.h5: .*No space left on device"
only_checkpoint "$M/run" 10
retort eval "$M/run" --tokens "$WORK/tok/val.h5" --max-windows 2 >/dev/null || fail "step 10 does not load"
# space again: --resume from step 10 finishes as if nothing happened
mount -o remount,size=8m "$M"
retort train "${T[@]}" --set train.steps=30 --set "run.dir=$M/run" --resume >"$WORK/resume.log" 2>&1 ||
  { cat "$WORK/resume.log" >&2; fail "resume after freeing space failed"; }
grep -q "resuming from .*step_00000010" "$WORK/resume.log" || fail "did not resume from step 10"
same_checkpoint "$WORK/whole/checkpoints/step_00000030" "$M/run/checkpoints/step_00000030" "disk-full + resumed run"
rm -rf "$M/run"

# 2. The disk turns read-only mid-run (remount once step 50's checkpoint is in place; retried
#    while a file happens to be open for writing): step 100's checkpoint fails.
R=("${T[@]}" --set train.steps=150 --set checkpoint.every=50 --set train.log_every=150 --set "run.dir=$M/ro")
retort train "${R[@]}" >"$WORK/ro.log" 2>&1 &
pid=$!
for _ in $(seq 600); do [ -f "$M/ro/checkpoints/step_00000050/state.json" ] && break; sleep 0.02; done
for _ in $(seq 100); do mount -o remount,ro "$M" 2>/dev/null && break; sleep 0.01; done
rc=0
wait "$pid" || rc=$?
[ "$rc" = 1 ] || { cat "$WORK/ro.log" >&2; fail "read-only: exit $rc, expected 1"; }
one_error_line "$WORK/ro.log" "checkpoint at step 100 not written \(step_00000050 is kept\): $M/ro/checkpoints/step_00000100\.tmp-[0-9]+: cannot create directory: Read-only file system"
only_checkpoint "$M/ro" 50
mount -o remount,rw "$M"
retort train "${R[@]}" --resume >"$WORK/ro.resume.log" 2>&1 || { cat "$WORK/ro.resume.log" >&2; fail "resume after remount rw failed"; }
grep -q "resuming from .*step_00000050" "$WORK/ro.resume.log" || fail "did not resume from step 50"
rm -rf "$M/ro"

# 3. generate fills the disk: 10 shards of ~28 KB (uncompressed) with 100 KB left.
retort train "${T[@]}" --set train.steps=5 --set "run.dir=$WORK/teacher" >/dev/null
G=("$TINY" --set "generate.teacher=$WORK/teacher" --set "generate.data=$WORK/tok/train.h5"
   --set generate.k=8 --set generate.num_sequences=40 --set generate.shard_sequences=4)
retort generate "${G[@]}" --set "generate.out=$WORK/ref_corpus" >/dev/null
avail=$(df -B1 --output=avail "$M" | tail -1)
fallocate -l $((avail - 100 * 1024)) "$M/filler"
rc=0
retort generate "${G[@]}" --set "generate.out=$M/corpus" >"$WORK/gen.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$WORK/gen.log" >&2; fail "generate on a full disk: exit $rc, expected 1"; }
one_error_line "$WORK/gen.log" "$M/corpus/shard-[0-9]{5}\.h5\.tmp-[0-9]+: .*No space left on device"
[ ! -e "$M/corpus/manifest.json" ] || fail "a manifest was written over a partial corpus"
! ls "$M/corpus" | grep -q tmp || fail "temporaries left: $(ls "$M/corpus")"
n=$(ls "$M/corpus" | wc -l)
[ "$n" -ge 1 ] && [ "$n" -lt 10 ] || fail "expected some of the 10 shards, found $n"
for f in "$M"/corpus/shard-*.h5; do cmp -s "$f" "$WORK/ref_corpus/$(basename "$f")" || fail "$(basename "$f") damaged"; done
echo "ok: the $n earlier shards are intact, no manifest, no temporaries"

# 4. ... and read-only: nothing changes; then writable with space: the rerun finishes.
mount -o remount,ro "$M"
rc=0
retort generate "${G[@]}" --set "generate.out=$M/corpus" >"$WORK/gen-ro.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$WORK/gen-ro.log" >&2; fail "generate on a read-only disk: exit $rc, expected 1"; }
one_error_line "$WORK/gen-ro.log" "$M/corpus/shard-[0-9]{5}\.h5\.tmp-[0-9]+: cannot create HDF5 file: Read-only file system"
mount -o remount,rw "$M"
rm "$M/filler"
retort generate "${G[@]}" --set "generate.out=$M/corpus" >"$WORK/gen-rerun.log" 2>&1 ||
  { cat "$WORK/gen-rerun.log" >&2; fail "generate rerun failed"; }
for f in "$WORK"/ref_corpus/*; do cmp "$f" "$M/corpus/$(basename "$f")" || fail "$(basename "$f") is not bitwise identical"; done
echo "ok: the rerun finished the corpus, bitwise identical"
rm -rf "$M/corpus"

# 5. export --format hf with 100 KB left (model.safetensors is ~0.5 MB): one error line naming
#    the file, no directory (nor its temporary) left.
avail=$(df -B1 --output=avail "$M" | tail -1)
fallocate -l $((avail - 100 * 1024)) "$M/filler"
rc=0
retort export "$WORK/teacher" --out "$M/hf" --format hf >"$WORK/hf.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$WORK/hf.log" >&2; fail "export on a full disk: exit $rc, expected 1"; }
one_error_line "$WORK/hf.log" "$M/hf\.tmp-[0-9]+/model\.safetensors: cannot write: No space left on device"
[ "$(ls "$M")" = filler ] || fail "export left: $(ls "$M")"
rm -f "$M/filler"

# 6. tokenize with 24 KB left (train.h5 is ~45 KB, its raw temporary as much): one error line
#    naming a file under tokenize.out, no temporary left; an earlier train.h5 is untouched.
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$M/tok" \
  --set tokenize.val_fraction=0.5 >/dev/null
cp "$M/tok/train.h5" "$WORK/train-before.h5"
avail=$(df -B1 --output=avail "$M" | tail -1)
fallocate -l $((avail - 24 * 1024)) "$M/filler"
rc=0
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$M/tok" \
  >"$WORK/tok.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$WORK/tok.log" >&2; fail "tokenize on a full disk: exit $rc, expected 1"; }
one_error_line "$WORK/tok.log" "$M/tok/train\.h5.*No space left on device"
[ -z "$(ls "$M/tok" | grep tmp)" ] || fail "tokenize left: $(ls "$M/tok")"
cmp "$M/tok/train.h5" "$WORK/train-before.h5" || fail "the earlier train.h5 changed"
echo PASS
