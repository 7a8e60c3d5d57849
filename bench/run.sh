#!/usr/bin/env bash
# Speed bench: snnTorch vs snnc on the same Fashion-MNIST convnet, side by side.
#
#   bench/run.sh                 # N=1600 training images (50 batches of 32), T=10
#   N=3200 NICE=19 bench/run.sh  # more images, both runs at low priority
#
# Environment:
#   N           training images (the first N; default 1600); inference uses as many test images
#   DATA_DIR    Fashion-MNIST gzip IDX files for snnTorch (default Debian's
#               /usr/share/datasets/fashion-mnist, which snnc finds by itself)
#   THREADS     threads for both frameworks (default 2)
#   NICE        niceness for both runs (default 0)
#   SKIP_SNNC=1 run only the snnTorch half; SKIP_BUILD=1 use the existing target/release/snnc
#
# Creates bench/.venv (git-ignored) with torch, snntorch and numpy from PyPI if they are not
# importable there yet. Peak RSS of both runs comes from /usr/bin/time -v. Raw outputs go to
# bench/out/ (git-ignored).
set -euo pipefail

cd "$(dirname "$0")/.."
N="${N:-1600}"
DATA_DIR="${DATA_DIR:-/usr/share/datasets/fashion-mnist}"
THREADS="${THREADS:-2}"
NICE="${NICE:-0}"
OUT=bench/out
VENV=bench/.venv
mkdir -p "$OUT"

if ! "$VENV/bin/python" -c "import torch, snntorch, numpy" 2>/dev/null; then
    echo "== setting up $VENV (torch, snntorch, numpy from PyPI; large download)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    # PyPI's Linux torch wheel needs its CUDA packages even on CPU: torch imports fail
    # without libcublasLt, so `--no-deps` does not work; the venv is about 5.4 GB.
    "$VENV/bin/pip" install --quiet torch numpy snntorch
fi

max_rss_mb() { # the peak RSS line of /usr/bin/time -v, in MB
    awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$1"
}

echo "== snnTorch: $N training images, T=10, batch 32, $THREADS threads" >&2
/usr/bin/time -v -o "$OUT/snntorch.time" nice -n "$NICE" "$VENV/bin/python" bench/snntorch_fmnist.py \
    --data-dir "$DATA_DIR" --train-images "$N" --infer-images "$N" \
    --batch 32 --timesteps 10 --threads "$THREADS" | tail -n 1 >"$OUT/snntorch.json"
cat "$OUT/snntorch.json" >&2

json_get() { # json_get FILE KEY
    "$VENV/bin/python" -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("n/a" if v is None else v)' "$1" "$2"
}

st_train=$(json_get "$OUT/snntorch.json" train_images_per_s)
st_infer=$(json_get "$OUT/snntorch.json" infer_images_per_s)
st_rss=$(max_rss_mb "$OUT/snntorch.time")
sn_train=n/a sn_infer=n/a sn_rss=n/a

if [[ "${SKIP_SNNC:-0}" != 1 ]]; then
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        cargo build --release --bin snnc >&2
    fi
    echo "== snnc: $N training images, T=10, batch 32, $THREADS threads" >&2
    marker="$OUT/.start"
    touch "$marker"
    RAYON_NUM_THREADS="$THREADS" /usr/bin/time -v -o "$OUT/snnc.time" nice -n "$NICE" \
        target/release/snnc train networks/fashion-mnist/agd/convnet.snn \
        --epochs 1 --train-limit "$N" \
        --batch 32 --timesteps 10 >"$OUT/snnc.log" 2>&1 || {
        echo "snnc train failed; see $OUT/snnc.log" >&2
        tail -n 20 "$OUT/snnc.log" >&2
    }
    # The newest report.json written by that run, wherever the train command puts it.
    report=$(find . \( -path ./target -o -path ./bench/.venv -o -path ./.git \) -prune -o -name report.json -newer "$marker" -print 2>/dev/null |
        xargs -r ls -t 2>/dev/null | head -n 1)
    if [[ -n "$report" ]]; then
        cp "$report" "$OUT/snnc-report.json"
        sn_train=$(json_get "$report" train_images_per_s)
        sn_infer=$(json_get "$report" infer_images_per_s)
    else
        echo "no report.json written by snnc train" >&2
    fi
    [[ -s "$OUT/snnc.time" ]] && sn_rss=$(max_rss_mb "$OUT/snnc.time")
fi

cat <<EOF
| framework | train images/s | inference images/s | peak RSS (MB) |
|---|---:|---:|---:|
| snnTorch | $st_train | $st_infer | $st_rss |
| snnc | $sn_train | $sn_infer | $sn_rss |

Fashion-MNIST convnet, $N training and $N test images, T = 10, batch 32, $THREADS threads, $(nproc) cores.
EOF
