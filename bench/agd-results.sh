#!/usr/bin/env bash
# The AGD experiments behind docs/results.md, on Fashion-MNIST from Debian's
# dataset-fashion-mnist (60,000 training and 10,000 test images). Long: about an
# hour per epoch-set on 2 cores. Each run writes runs/results/<name>/report.json;
# the summary table is printed at the end.
#
#   bash bench/agd-results.sh [EPOCHS_LONG]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS_LONG=${1:-4}
cargo build --release --quiet
SNNC=target/release/snnc
DATA=fashion-mnist
OUT=runs/results
run() { # name file extra-args...
  local name=$1 file=$2; shift 2
  if [ -f "$OUT/$name/report.json" ]; then echo "== $name: already done"; return; fi
  echo "== $name"
  "$SNNC" train "$file" --data "$DATA" --out "$OUT/$name" --seed 1 "$@"
}
F=networks/fashion-mnist/agd
# 1. The convnet, T = 10, Poisson input: one epoch, then more (resumed), and its ANN baseline.
run convnet-e1       $F/convnet.snn --epochs 1
run convnet-ann-e1   $F/convnet.snn --epochs 1 --method ann
# 2. Stochmax vs softmax at T = 5 (Table X's experiment), one epoch each.
run convnet-t5-softmax   $F/convnet.snn          --epochs 1 --timesteps 5
run convnet-t5-stochmax  $F/convnet-stochmax.snn --epochs 1 --timesteps 5
# 3. BackRes (Conv2 x2) vs its unshared twin of equal logical depth.
run backres-e1   $F/backres.snn  --epochs 1
run unshared-e1  $F/unshared.snn --epochs 1
# 4. More epochs of the convnet.
if [ ! -f "$OUT/convnet-long/report.json" ]; then
  mkdir -p "$OUT/convnet-long"
  "$SNNC" train $F/convnet.snn --data "$DATA" --out "$OUT/convnet-long" --seed 1 --epochs "$EPOCHS_LONG" --lr-schedule cosine
fi
python3 bench/summarize.py "$OUT"
