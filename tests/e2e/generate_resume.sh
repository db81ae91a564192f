#!/usr/bin/env bash
# Resume: after losing a shard and the manifest (a crash), a rerun on a different number of
# ranks regenerates only what is missing and gives the identical corpus; kept shards are not
# rewritten. A truncated shard is regenerated. The manifest records every shard's size and
# sha256; a rerun over a complete corpus regenerates a shard that fails its checksum (without
# libhdf5 reading it) and adds the checksums to a manifest of an older version. A rerun with
# other metadata is refused with nothing changed.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
retort train "$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" \
  --set train.steps=5 --set eval.every=0 --set "run.dir=$WORK/teacher" >/dev/null
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
G=("$TINY" --set "generate.teacher=$WORK/teacher" --set "generate.data=$WORK/tok/val.h5"
   --set generate.mode=sample --set generate.prompt_len=0 --set generate.num_sequences=10
   --set generate.k=4 --set generate.seq_len=16 --set generate.shard_sequences=3 --set generate.compression=4)
CHECK=(/usr/bin/python3 "$SRC/tests/e2e/check_corpus.py")

retort generate "${G[@]}" --set "generate.out=$WORK/full" >/dev/null
cp -r "$WORK/full" "$WORK/crash"
rm "$WORK/crash/shard-00002.h5" "$WORK/crash/manifest.json"
kept=$(stat -c %i:%Y "$WORK/crash/shard-00001.h5")
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" generate "${G[@]}" --set "generate.out=$WORK/crash" > "$WORK/resume.txt"
grep -q "1 written, 1 kept" "$WORK/resume.txt" || { cat "$WORK/resume.txt"; fail "rank 0 should write 1 shard and keep 1"; }
[ "$(stat -c %i:%Y "$WORK/crash/shard-00001.h5")" = "$kept" ] || fail "a valid shard was rewritten"
"${CHECK[@]}" same "$WORK/full" "$WORK/crash"
cmp "$WORK/full/shard-00002.h5" "$WORK/crash/shard-00002.h5" || fail "regenerated shard differs bitwise"

# a truncated shard (no manifest yet) is regenerated
rm "$WORK/crash/manifest.json"
truncate -s 1000 "$WORK/crash/shard-00003.h5"
retort generate "${G[@]}" --set "generate.out=$WORK/crash" >/dev/null 2>"$WORK/err.txt"
grep -q "regenerating .*shard-00003.h5" "$WORK/err.txt" || fail "no regeneration message"
"${CHECK[@]}" same "$WORK/full" "$WORK/crash"

# a complete corpus: a rerun keeps everything
retort generate "${G[@]}" --set "generate.out=$WORK/crash" | grep -q "0 written, 4 kept" || fail "complete corpus rewritten"

# the manifest's checksums are those of the shard files
/usr/bin/python3 - "$WORK/full" <<'PY' || fail "manifest checksums"
import hashlib, json, os, sys
d = sys.argv[1]
for s in json.load(open(d + "/manifest.json"))["shards"]:
    data = open(os.path.join(d, s["file"]), "rb").read()
    assert s["bytes"] == len(data) and s["sha256"] == hashlib.sha256(data).hexdigest(), s
PY
# a flipped byte in a complete corpus: the rerun finds it by its checksum and regenerates it
printf '\x5a' | dd of="$WORK/crash/shard-00001.h5" bs=1 seek=200 conv=notrunc status=none
retort generate "${G[@]}" --set "generate.out=$WORK/crash" >"$WORK/out.txt" 2>"$WORK/err.txt"
grep -Eq "regenerating .*shard-00001.h5 \(.*shard-00001.h5: corrupt: sha256 is [0-9a-f]{64}, manifest.json records" \
  "$WORK/err.txt" || { cat "$WORK/err.txt"; fail "no checksum message"; }
grep -q "1 written, 3 kept" "$WORK/out.txt" || { cat "$WORK/out.txt"; fail "expected 1 shard rewritten"; }
cmp "$WORK/full/shard-00001.h5" "$WORK/crash/shard-00001.h5" || fail "regenerated shard differs bitwise"
cmp "$WORK/full/manifest.json" "$WORK/crash/manifest.json" || fail "manifest changed"
# a manifest without checksums (an older version wrote it): the rerun adds them
/usr/bin/python3 - "$WORK/crash/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for s in m["shards"]: del s["sha256"], s["bytes"]
json.dump(m, open(sys.argv[1], "w"), indent=2)
PY
retort generate "${G[@]}" --set "generate.out=$WORK/crash" | grep -q "0 written, 4 kept" || fail "old corpus rewritten"
cmp "$WORK/full/manifest.json" "$WORK/crash/manifest.json" || fail "checksums not added to an old manifest"

# other metadata: refused, nothing touched
expect_fail 2 "manifest.json: existing corpus has different metadata: seed \(1 vs 2\)" \
  retort generate "${G[@]}" --set generate.seed=2 --set "generate.out=$WORK/crash"
rm "$WORK/crash/manifest.json"
expect_fail 2 "shard-0000[0-3].h5: existing shard has different metadata: k \(4 vs 5\)" \
  retort generate "${G[@]}" --set generate.k=5 --set "generate.out=$WORK/crash"
expect_fail 2 "shard-0000[0-3].h5: existing shard has different metadata: teacher_precision \(fp32 vs bf16\)" \
  retort generate "${G[@]}" --set generate.precision=bf16 --set "generate.out=$WORK/crash"
expect_fail 2 "shard-0000[23].h5: belongs to a larger corpus" \
  retort generate "${G[@]}" --set generate.num_sequences=6 --set "generate.out=$WORK/crash"
expect_fail 2 "existing shard holds [13] sequences, this corpus needs 2" \
  retort generate "${G[@]}" --set generate.shard_sequences=2 --set generate.num_sequences=8 --set "generate.out=$WORK/crash"
[ "$(ls "$WORK/crash")" = "$(printf 'shard-%05d.h5\n' 0 1 2 3)" ] || fail "refused runs changed the directory"
for f in 0 1 2 3; do cmp "$WORK/full/shard-0000$f.h5" "$WORK/crash/shard-0000$f.h5" || fail "shard $f changed"; done
echo PASS
