#!/usr/bin/env bash
# Data parallelism equals one process: dp2 (2 ranks) vs 1 rank on tiny.yaml, tied and untied,
# at the same global batch: per-step losses within 1e-5 relative, final parameters within 1e-4
# relative norm. Then: bitwise resume on dp2, resume of a dp2 checkpoint on 1 process, and the
# start-up checks (mesh size, config mismatch across ranks, axes not available yet).
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=20 --set checkpoint.every=10 --set checkpoint.keep_last=0)

for tied in true false; do
  retort train "${ARGS[@]}" --set model.tie_embeddings=$tied --set "run.dir=$WORK/one_$tied" >/dev/null
  "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set model.tie_embeddings=$tied \
    --set parallel.dp=2 --set "run.dir=$WORK/dp2_$tied" >/dev/null
  compare_runs "$WORK/one_$tied" "$WORK/dp2_$tied"
  [ "$(json "$WORK/dp2_$tied/summary.json" "len(j['memory'])")" = 2 ] || fail "memory lists 2 ranks"
done

# Bitwise resume on the same mesh.
cp -r "$WORK/dp2_true" "$WORK/dp2_resume"
rm -rf "$WORK/dp2_resume/checkpoints/step_00000020" "$WORK/dp2_resume/summary.json"
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.dp=2 --set "run.dir=$WORK/dp2_resume" --resume >/dev/null
cmp "$WORK/dp2_true/checkpoints/step_00000020/model.h5" "$WORK/dp2_resume/checkpoints/step_00000020/model.h5" \
  || fail "dp2 resume is not bitwise identical"

# A dp2 checkpoint resumes on one process and continues like the uninterrupted run.
cp -r "$WORK/dp2_true" "$WORK/dp2_to_one"
rm -rf "$WORK/dp2_to_one/checkpoints/step_00000020" "$WORK/dp2_to_one/summary.json"
retort train "${ARGS[@]}" --set "run.dir=$WORK/dp2_to_one" --resume >/dev/null
compare_runs "$WORK/one_true" "$WORK/dp2_to_one"

# Start-up checks.
expect_fail 2 "dp\*fsdp\*tp = 1 does not match the 2 launched ranks" "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set "run.dir=$WORK/bad1"
expect_fail 2 "rank\(s\) 1 resolved a different config than rank 0" "${MPIRUN[@]}" \
  -np 1 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.dp=2 --set "run.dir=$WORK/bad2" : \
  -np 1 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.dp=2 --set "run.dir=$WORK/bad2" --set train.lr=0.1
# One rank cannot read its data (relative paths, rank 1 starts in another directory, as on a
# node without the file): the whole job ends promptly with that rank's message.
mkdir -p "$WORK/elsewhere"
REL=("$TINY" --set data.train=tok/train.h5 --set data.val=tok/val.h5 --set parallel.dp=2 --set run.dir=bad4)
start=$(date +%s)
expect_fail 1 "\(rank 1\).*tok/train.h5" "${MPIRUN[@]}" \
  -np 1 -wdir "$WORK" "$RETORT_BIN" train "${REL[@]}" : -np 1 -wdir "$WORK/elsewhere" "$RETORT_BIN" train "${REL[@]}"
[ $(( $(date +%s) - start )) -lt 30 ] || fail "the failed job took more than 30 s to end"
echo PASS
