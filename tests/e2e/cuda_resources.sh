#!/usr/bin/env bash
# bench/cuda_resources.sh on core/cuda/cross_entropy.cu (ptxas only, no GPU; skipped without
# nvcc): one line per kernel, and the cross-entropy's row kernels, launched with up to 1024
# threads, held by their launch bounds to 32 registers (two blocks per SM) without spilling.
source "$(dirname "$0")/lib.sh"
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
[ -x "$NVCC" ] || skip "no nvcc at $NVCC"

NVCC=$NVCC "$SRC/bench/cuda_resources.sh" "$SRC/core/cuda/cross_entropy.cu" > "$WORK/out.txt"
cat "$WORK/out.txt"
python3 - "$WORK/out.txt" <<'PY'
import sys
rows = [line.split(None, 5) for line in open(sys.argv[1]).read().splitlines()[1:]]
assert rows and all(len(r) == 6 and r[0] == "cross_entropy" for r in rows), rows
row_kernels = [r for r in rows if "ce_forward_kernel<" in r[5] or "ce_backward_kernel<" in r[5]]
assert len(row_kernels) == 6, row_kernels  # (Out, In): (f32, f32), (bf16, f32), (bf16, bf16)
for file, regs, spills, smem, blocks, kernel in row_kernels:
    assert int(regs) <= 32 and spills == "0/0", (regs, spills, kernel)
    assert int(blocks) == 8, (blocks, kernel)  # of 256 threads: 65536 / (32 · 256)
print(f"ok: {len(rows)} kernels, the {len(row_kernels)} row kernels at <= 32 registers")
PY
expect_fail 2 "unknown option --bogus" "$SRC/bench/cuda_resources.sh" --bogus
