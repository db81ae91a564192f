#!/usr/bin/env bash
# The quickstart pipeline on tiny.yaml (teacher) and tiny-student.yaml: tokenize → teacher →
# corpus → distilled and supervised students → eval → summary (table, summary.json with the
# keys users rely on, losses.png); then rerun (stages skip), export, and eval of the export
# equals eval of the checkpoint.
source "$(dirname "$0")/lib.sh"
python3 "$SRC/tests/e2e/make_corpus.py" "$WORK/corpus" 40
QS=("$SRC/launch/quickstart.sh" --config "$TINY" --student-config "$SRC/configs/tiny-student.yaml"
    --text "$WORK/corpus" --run-dir "$WORK/run" --skip-deps)
"${QS[@]}" | tee "$WORK/qs.log"
grep -q "the distilled student" "$WORK/qs.log" || fail "no summary printed"

Q=$WORK/run/summary.json
for key in teacher.val_loss student_distilled.val_loss student_supervised.val_loss \
           student_distilled.kl_to_teacher student_supervised.kl_to_teacher teacher.tokens \
           student_distilled.tokens student_supervised.tokens corpus.tokens teacher.wall_s corpus.wall_s; do
  [ "$(json "$Q" "j['${key%%.*}']['${key#*.}'] is not None")" = True ] || fail "summary.json lacks $key"
done
# Same number of tokens for both students (20 steps × 512), and the corpus holds them.
[ "$(json "$Q" "j['student_distilled']['tokens'] == j['student_supervised']['tokens'] == j['corpus']['tokens'] == 10240")" = True ] \
  || fail "students or corpus differ in tokens: $(cat "$Q")"
[ "$(json "$Q" "j['teacher']['val_loss'] < j['student_supervised']['val_loss']")" = True ] || fail "teacher is not the strongest"
/usr/bin/python3 -c "import sys; from PIL import Image; Image.open(sys.argv[1]).verify()" "$WORK/run/losses.png" 2>/dev/null \
  || [ "$(head -c 8 "$WORK/run/losses.png" | od -An -c | tr -d ' ')" = '211PNG\r\n032\n' ] || fail "losses.png is not a PNG"

S=$WORK/run/teacher/summary.json
for key in final_val_loss params params_nonembedding tokens_seen flops tokens_per_s wall_s memory; do
  [ "$(json "$S" "'$key' in j")" = True ] || fail "summary.json lacks $key"
done
[ "$(json "$S" "j['tokens_seen']")" = 15360 ] || fail "tokens_seen != 30 steps x 512"
[ "$(json "$S" "j['final_val_loss'] < 4.5")" = True ] || fail "did not learn: $(cat "$S")"
[ "$(json "$S" "j['memory'][0]['params_bytes'] == 4*j['params']")" = True ] || fail "memory"

python3 - "$WORK/run/teacher/metrics.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
steps = [l for l in lines if "loss" in l]
evals = [l for l in lines if "val_loss" in l]
assert [l["step"] for l in steps] == list(range(5, 31, 5)), steps
for l in steps:
    assert all(k in l for k in ("step", "loss", "lr", "tokens", "tokens_per_s")), l
assert [l["step"] for l in evals] == [10, 20, 30], evals
assert steps[-1]["loss"] < steps[0]["loss"], "loss did not fall"
PY

# eval follows SPEC §3: W = min(max_windows, floor((n-1)/T)).
E=$WORK/run/eval/teacher.json
n=$(/usr/bin/python3 -c "import h5py,sys; print(h5py.File(sys.argv[1])['tokens'].shape[0])" "$WORK/run/tokens/val.h5")
W=$(( (n - 1) / 64 ))
[ "$(json "$E" "j['windows']")" = "$W" ] || fail "windows != $W"
[ "$(json "$E" "j['tokens']")" = "$((W * 64))" ] || fail "tokens != W*T"

# Rerun: every stage finds its outputs.
"${QS[@]}" > "$WORK/qs2.log"
for d in teacher/summary.json corpus/manifest.json student_distilled/summary.json student_supervised/summary.json; do
  grep -q "found $WORK/run/$d" "$WORK/qs2.log" || fail "rerun redid $d"
done

# Export, then eval of the export gives the same loss as eval of the run.
retort export "$WORK/run/teacher" --out "$WORK/export"
[ -f "$WORK/export/model.h5" ] && [ -f "$WORK/export/config.yaml" ] || fail "export incomplete"
[ ! -e "$WORK/export/state.json" ] || fail "export carries training state"
retort eval "$WORK/export" --tokens "$WORK/run/tokens/val.h5" --out "$WORK/eval_export.json" >/dev/null
[ "$(json "$E" "j['loss']")" = "$(json "$WORK/eval_export.json" "j['loss']")" ] || fail "export eval differs"
echo PASS
