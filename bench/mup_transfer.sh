#!/usr/bin/env bash
# Does the best learning rate carry across widths? Trains the same 2-layer model at several
# widths and learning rates twice: standard parametrization (init normal, one learning rate)
# and µP (init mup, model.mup_base_width = the first width), both untied, and prints the
# final validation loss of every run, each width's best learning rate and how far it moved.
#
#   bench/mup_transfer.sh TOKENS_DIR [--widths "64 128 256"] [--steps 200] [--out DIR]
#                         [--sp-lrs "..."] [--mup-lrs "..."] [--params "sp mup"] [--set key=value ...]
#
# TOKENS_DIR: a `retort tokenize` output (train.h5, val.h5), e.g. of the Brown corpus with
# configs/quickstart.yaml. The base config is configs/quickstart.yaml (vocabulary 4096, T 256,
# 4096-token batches, 10% warmup); head_dim 32, so a width w has w/32 heads. Runs one training
# at a time (OMP_NUM_THREADS as set); results in DIR/results.csv (default runs/mup_transfer).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bin=${RETORT_BIN:-$ROOT/build/retort}
tok=${1:?usage: bench/mup_transfer.sh TOKENS_DIR [options] (see the header)}
shift
widths="64 128 256" steps=200 out=runs/mup_transfer extra=() params="sp mup"
sp_lrs="5e-4 1e-3 2e-3 4e-3 8e-3 1.6e-2"
mup_lrs=$sp_lrs
while [[ $# -gt 0 ]]; do
  case "$1" in
    --widths) widths=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --sp-lrs) sp_lrs=$2; shift 2 ;;
    --mup-lrs) mup_lrs=$2; shift 2 ;;
    --params) params=$2; shift 2 ;;
    --set) extra+=(--set "$2"); shift 2 ;;
    *) echo "mup_transfer.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
for f in train.h5 val.h5; do
  [[ -f $tok/$f ]] || { echo "mup_transfer.sh: no $tok/$f (run retort tokenize first)" >&2; exit 2; }
done
base=${widths%% *}
mkdir -p "$out"
csv=$out/results.csv
[[ -f $csv ]] || echo "param,width,lr,val_loss" > "$csv"
for param in $params; do  # an earlier table keeps the rows of the other parametrization
  grep -v "^$param," "$csv" > "$csv.tmp" || true
  mv "$csv.tmp" "$csv"
done
for param in $params; do
  if [[ $param == sp ]]; then lrs=$sp_lrs init=(--set model.init=normal)
  else lrs=$mup_lrs init=(--set model.init=mup --set "model.mup_base_width=$base"); fi
  for w in $widths; do
    for lr in $lrs; do
      run=$out/$param-w$w-lr$lr
      rm -rf "$run"
      echo "[mup_transfer] $param width $w lr $lr" >&2
      "$bin" train "$ROOT/configs/quickstart.yaml" --set "run.dir=$run" \
        --set "data.train=$tok/train.h5" --set "data.val=$tok/val.h5" \
        --set model.n_layers=2 --set "model.d_model=$w" --set "model.n_heads=$((w / 32))" \
        --set model.tie_embeddings=false "${init[@]}" --set "train.lr=$lr" \
        --set "train.steps=$steps" --set "train.warmup_steps=$((steps / 10))" \
        --set eval.every=0 --set checkpoint.keep_last=1 "${extra[@]}" > "$run.log" 2>&1 ||
        { echo "mup_transfer.sh: $run failed; its output: $run.log" >&2; exit 1; }
      loss=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["final_val_loss"])' \
             "$run/summary.json")
      echo "$param,$w,$lr,$loss" >> "$csv"
    done
  done
done
/usr/bin/python3 - "$csv" <<'PY'
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for param in ("sp", "mup"):
    rs = [r for r in rows if r["param"] == param]
    if not rs:
        continue
    lrs = sorted({float(r["lr"]) for r in rs})
    widths = sorted({int(r["width"]) for r in rs})
    print(f"\n{param}: final val loss (* best per width)")
    print("  width " + "".join(f"{lr:>10.2g}" for lr in lrs))
    best = {}
    for w in widths:
        loss = {float(r["lr"]): float(r["val_loss"]) for r in rs if int(r["width"]) == w}
        best[w] = min(loss, key=loss.get)
        print(f"  {w:5d} " + "".join(
            f"{loss[lr]:9.4f}{'*' if lr == best[w] else ' '}" if lr in loss else f"{'-':>10}" for lr in lrs))
    moved = math.log2(best[widths[-1]] / best[widths[0]])
    print(f"  best lr {best[widths[0]]:.3g} at width {widths[0]} -> {best[widths[-1]]:.3g} at width "
          f"{widths[-1]}: moved {moved:+.1f} doublings over a {widths[-1] // widths[0]}x wider model")
PY
