#!/usr/bin/env bash
# The AGD experiments behind docs/results.md, on Fashion-MNIST from Debian's
# dataset-fashion-mnist (60,000 training and 10,000 test images). Long: about two
# hours on 2 cores. Each run writes runs/results/<name>/report.json;
# the summary table is printed at the end.
#
#   bash bench/agd-results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
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
# 1. The convnet, T = 10, Poisson input: 3 epochs (cosine schedule; the report has the test accuracy
#    after each epoch), and its ANN baseline.
run convnet-e3       $F/convnet.snn --epochs 3 --lr-schedule cosine
run convnet-ann-e1   $F/convnet.snn --epochs 1 --method ann
# 2. Stochmax vs softmax at T = 5 (Table X's experiment), 2 epochs of the first 20,000 images.
run t5-softmax   $F/convnet.snn          --epochs 2 --timesteps 5 --train-limit 20000
run t5-stochmax  $F/convnet-stochmax.snn --epochs 2 --timesteps 5 --train-limit 20000
# 3. BackRes (Conv2 x2) vs its unshared twin of equal logical depth, 1 epoch of 20,000 images.
run backres   $F/backres.snn  --epochs 1 --train-limit 20000
run unshared  $F/unshared.snn --epochs 1 --train-limit 20000
python3 bench/summarize.py "$OUT"
