#!/usr/bin/env bash
# bench/gpu.sh as a script (label gpu; exits 77 = skipped without a GPU), two runs of the tiny
# model: summary.md has retort's row (tokens/s, MFU, matmul ceiling, GPU memory) and one row per
# PyTorch peer, measured (with retort's ratio to it) or "failed: <its last stderr line>" with the
# run's .err file kept. Without a CUDA-enabled torch in this python3 (CI, the simulator) both peer
# rows must fail; gpu.sh exits 1 exactly when a row failed, after printing the table.
source "$(dirname "$0")/lib.sh"
gpus=$(retort info "$TINY" --json | json /dev/stdin "j['cuda_gpus']")
[ "$gpus" != "0" ] || skip "no GPU visible"

rc=0
RETORT_BIN=$RETORT_BIN "$SRC/bench/gpu.sh" --runs 2 --configs "$TINY" --out "$WORK/bench" \
  --set parallel.device=cuda --set train.precision=bf16 --set bench.steps=2 \
  --set bench.warmup=1 --set bench.ceiling_n=256 > "$WORK/gpu_sh.out" 2> "$WORK/gpu_sh.err" || rc=$?
cat "$WORK/gpu_sh.out"
[ -f "$WORK/bench/summary.md" ] || { cat "$WORK/gpu_sh.err" >&2; fail "gpu.sh wrote no summary.md (exit $rc)"; }
torch_gpu=0
python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null || torch_gpu=$?

python3 - "$WORK/bench" "$rc" "$torch_gpu" <<'PY'
import glob, json, os, re, sys
out, rc, torch_gpu = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "0"
rows = {}
for line in open(os.path.join(out, "summary.md")):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 7 and cells[0] == "tiny":
        rows[cells[1]] = cells
assert sorted(rows) == ["compile", "eager", "retort"], f"rows: {sorted(rows)}"
assert len(glob.glob(f"{out}/tiny-retort-*.json")) == 2, "two retort runs"
_, _, tok, mfu, ceil, mem, ratio = rows["retort"]
assert float(tok) > 0 and re.fullmatch(r"[0-9.]+%", mfu) and float(ceil) >= 0 and float(mem) >= 0, rows["retort"]
assert all(json.load(open(f))["gpu_peak_bytes"] > 0 for f in glob.glob(f"{out}/tiny-retort-*.json"))
assert ratio == "1.00", rows["retort"]
failed = []
for impl in ("eager", "compile"):
    cells = rows[impl]
    if cells[2].startswith("failed: "):
        failed.append(impl)
        assert len(cells[2]) > len("failed: "), f"{impl}: no reason given"
        assert glob.glob(f"{out}/tiny-{impl}-*.err"), f"{impl}: its .err files are missing"
    else:
        assert float(cells[2]) > 0 and float(cells[6]) > 0, cells
assert torch_gpu or failed == ["eager", "compile"], f"no CUDA torch here, yet {failed} failed"
assert rc == (1 if failed else 0), f"gpu.sh exited {rc} with failed rows {failed}"
print(f"ok: retort {tok} tok/s; peers failed: {failed or 'none'}; gpu.sh exit {rc}")
PY
