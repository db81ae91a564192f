#!/usr/bin/env bash
# Preemption of `retort generate`: SIGTERM to one process, and SIGUSR1 to mpirun (2 ranks; it
# forwards the signal to both), stop the job after the shard each rank is on: exit 75, one
# "generate preempted" line, the finished shards in place, no manifest and no temporaries.
# The same command then finishes the corpus, bitwise identical (every shard and the
# manifest) to an uninterrupted run.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
retort train "$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" \
  --set train.steps=5 --set eval.every=0 --set "run.dir=$WORK/teacher" >/dev/null
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
# 12 shards of 2 sampled sequences (63 decode steps each, no KV cache: slow enough to stop)
G=("$TINY" --set "generate.teacher=$WORK/teacher" --set "generate.data=$WORK/tok/train.h5"
   --set generate.mode=sample --set generate.prompt_len=4 --set generate.num_sequences=24
   --set generate.shard_sequences=2 --set generate.batch=2 --set generate.k=4
   --set generate.kv_cache=false --set generate.seed=3)
N_SHARDS=12

retort generate "${G[@]}" --set "generate.out=$WORK/whole" >/dev/null

# interrupt NAME SIGNAL LAUNCHER...: start, signal once the first shard is in place, check the
# stop, rerun the same command, compare with the uninterrupted corpus byte for byte.
interrupt() {
  local name=$1 sig=$2; shift 2
  local out=$WORK/$name rc=0
  "$@" "${G[@]}" --set "generate.out=$out" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do compgen -G "$out/shard-*.h5" >/dev/null && break; sleep 0.05; done
  kill -"$sig" "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = 75 ] || { cat "$WORK/$name.log" >&2; fail "$name: exit $rc after SIG$sig, expected 75"; }
  grep -Eq "^generate preempted \((SIG$sig|a signal on another rank)\): [0-9]+ of $N_SHARDS shards of .* complete, no manifest yet; exit 75" \
    "$WORK/$name.log" || { cat "$WORK/$name.log" >&2; fail "$name: no preemption line"; }
  [ ! -e "$out/manifest.json" ] || fail "$name: a preempted run wrote the manifest"
  ! ls "$out" | grep -q tmp || fail "$name: temporaries left: $(ls "$out")"
  local n; n=$(ls "$out" | grep -c '^shard-')
  [ "$n" -lt "$N_SHARDS" ] || fail "$name: the signal came too late (all $n shards written)"
  for f in "$out"/shard-*.h5; do cmp -s "$f" "$WORK/whole/$(basename "$f")" || fail "$name: $(basename "$f") differs"; done
  echo "ok: $name stopped on SIG$sig after $n of $N_SHARDS shards with exit 75"
  "$@" "${G[@]}" --set "generate.out=$out" >"$WORK/$name.rerun.log" 2>&1 \
    || { cat "$WORK/$name.rerun.log" >&2; fail "$name: rerun failed"; }
  [ "$(ls "$out")" = "$(ls "$WORK/whole")" ] || fail "$name: files differ: $(ls "$out")"
  for f in "$WORK/whole"/*; do cmp "$f" "$out/$(basename "$f")" || fail "$name: $(basename "$f") is not bitwise identical"; done
  echo "ok: $name rerun completed the corpus, bitwise identical to the uninterrupted one"
}

interrupt one TERM "$RETORT_BIN" generate
interrupt dp2 USR1 "${MPIRUN[@]}" -np 2 "$RETORT_BIN" generate
echo PASS
