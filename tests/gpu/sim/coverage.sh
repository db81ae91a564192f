#!/bin/bash
# Which lines of the GPU backend the simulator's GPU tests run: builds retort with
# RETORT_CUDA=SIM and gcov instrumentation into $COV_BUILD (default build-cov/ in the repository
# root; sanitizers off), runs `ctest -L gpu` there as tests/gpu/sim/run.sh does, and prints line
# coverage per file of the code a GPU run goes through (the translated kernels, core/cuda/, the
# NCCL communicator and the parallel layers, the models, the generator), then the lines not run
# of the files named as arguments (paths ending so; e.g. core/cuda/matmul.cpp).
#   tests/gpu/sim/coverage.sh                              the table (~15 min on 2 cores)
#   COV_SKIP_RUN=1 tests/gpu/sim/coverage.sh core/ops.cpp  the last run's data, lines not run
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${COV_BUILD:-$root/build-cov}
if [ -z "${COV_SKIP_RUN:-}" ]; then
  cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DRETORT_CUDA=SIM -DRETORT_FUZZ=OFF \
    -DRETORT_SIM_SANITIZE=OFF -DCMAKE_CXX_FLAGS="--coverage -O1" \
    -DCMAKE_EXE_LINKER_FLAGS="--coverage" >/dev/null
  cmake --build "$out" -j "${JOBS:-$(nproc)}" --target retort test_cuda_kernels test_cuda_model \
    test_simulator test_nccl_communicator
  find "$out" -name '*.gcda' -delete
  (cd "$out" && SIM_GPUS=4 GPU_TRAIN_STEPS=6 GPU_DISTILL_STEPS=4 ctest -j "${SIM_JOBS:-2}" -L '^gpu$' \
    --output-on-failure)
fi
/usr/bin/python3 - "$out" "$root" "$@" <<'PY'
import collections, glob, gzip, json, os, subprocess, sys, tempfile
out, root, show = sys.argv[1], sys.argv[2], sys.argv[3:]
lines = collections.defaultdict(dict)  # source file -> line -> count (max over objects)
for d in sorted({os.path.dirname(p) for p in glob.glob(out + "/**/*.gcda", recursive=True)}):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["gcov", "-j", "-o", d] + glob.glob(d + "/*.gcda"), cwd=tmp,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for j in glob.glob(tmp + "/*.json.gz"):
            data = json.load(gzip.open(j))
            for f in data["files"]:
                name = os.path.normpath(os.path.join(data.get("current_working_directory", ""), f["file"]))
                for l in f["lines"]:
                    n = l["line_number"]
                    lines[name][n] = max(lines[name].get(n, 0), l["count"])
groups = [("kernels", lambda n: "/cuda-sim/" in n),
          ("core/cuda", lambda n: n.startswith(root + "/core/cuda/")),
          ("parallel", lambda n: any(n.endswith(f) for f in (
              "parallel/nccl_communicator.cpp", "parallel/communicator.cpp",
              "parallel/data_parallel.cpp", "parallel/fully_sharded.cpp",
              "parallel/tensor_parallel.cpp"))),
          ("models", lambda n: n.startswith(root + "/models/")),
          ("generation", lambda n: n.endswith("launch/corpus_generator.cpp"))]
for group, member in groups:
    hit = total = 0
    for name in sorted(n for n in lines if member(n)):
        ls = lines[name]
        h = sum(c > 0 for c in ls.values())
        hit, total = hit + h, total + len(ls)
        print(f"{h:6d} / {len(ls):5d}  {100 * h / max(len(ls), 1):5.1f}%  {os.path.relpath(name, root)}")
    print(f"{hit:6d} / {total:5d}  {100 * hit / max(total, 1):5.1f}%  == {group}\n")
for want in show:
    for name in (n for n in lines if n.endswith(want)):
        src = open(name).read().split("\n")
        missed = sorted(n for n, c in lines[name].items() if c == 0)
        print(f"{os.path.relpath(name, root)}: {len(missed)} lines not run")
        for n in missed:
            print(f"{n:6d}: {src[n - 1]}")
PY
