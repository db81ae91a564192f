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

compare() {  # compare RUN_A RUN_B: losses per step and final parameters
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys, h5py, numpy as np
a, b = sys.argv[1], sys.argv[2]
def losses(run):
    return {(l["step"], "val" if "val_loss" in l else "train"): l.get("loss", l.get("val_loss"))
            for l in map(json.loads, open(run + "/metrics.jsonl"))}
la, lb = losses(a), losses(b)
assert la.keys() == lb.keys(), (sorted(la), sorted(lb))
worst = max(abs(la[k] - lb[k]) / abs(la[k]) for k in la)
assert worst < 1e-5, f"loss differs by {worst:.3g} relative"
fa = h5py.File(a + "/checkpoints/step_00000020/model.h5")
fb = h5py.File(b + "/checkpoints/step_00000020/model.h5")
assert sorted(fa) == sorted(fb)
for name in fa:
    x, y = np.asarray(fa[name], np.float64), np.asarray(fb[name], np.float64)
    rel = np.linalg.norm(x - y) / np.linalg.norm(x)
    assert rel < 1e-4, f"{name}: parameters differ by {rel:.3g} relative norm"
print(f"ok: {len(la)} losses within {worst:.2g} relative, {len(fa)} tensors within 1e-4")
PY
}

for tied in true false; do
  retort train "${ARGS[@]}" --set model.tie_embeddings=$tied --set "run.dir=$WORK/one_$tied" >/dev/null
  "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set model.tie_embeddings=$tied \
    --set parallel.dp=2 --set "run.dir=$WORK/dp2_$tied" >/dev/null
  compare "$WORK/one_$tied" "$WORK/dp2_$tied"
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
compare "$WORK/one_true" "$WORK/dp2_to_one"

# Start-up checks.
expect_fail 2 "dp\*fsdp\*tp = 1 does not match the 2 launched ranks" "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set "run.dir=$WORK/bad1"
expect_fail 2 "rank\(s\) 1 resolved a different config than rank 0" "${MPIRUN[@]}" \
  -np 1 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.dp=2 --set "run.dir=$WORK/bad2" : \
  -np 1 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.dp=2 --set "run.dir=$WORK/bad2" --set train.lr=0.1
expect_fail 2 "parallel.tp.*not available" "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.tp=2 --set "run.dir=$WORK/bad3"
# One rank cannot read its data (relative paths, rank 1 starts in another directory, as on a
# node without the file): the whole job ends promptly with that rank's message.
mkdir -p "$WORK/elsewhere"
REL=("$TINY" --set data.train=tok/train.h5 --set data.val=tok/val.h5 --set parallel.dp=2 --set run.dir=bad4)
start=$(date +%s)
expect_fail 1 "\(rank 1\).*tok/train.h5" "${MPIRUN[@]}" \
  -np 1 -wdir "$WORK" "$RETORT_BIN" train "${REL[@]}" : -np 1 -wdir "$WORK/elsewhere" "$RETORT_BIN" train "${REL[@]}"
[ $(( $(date +%s) - start )) -lt 30 ] || fail "the failed job took more than 30 s to end"
echo PASS
