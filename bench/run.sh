#!/usr/bin/env bash
# Speed bench: snnc vs snnTorch vs SpikingJelly on the same Fashion-MNIST convnet
# (networks/fashion-mnist/agd/convnet.snn), each program RUNS times in alternating order,
# on a machine checked quiet before every run. See bench/README.md.
#
#   bench/run.sh                          # N=3200 training, 1000 test images, 3 runs each
#   N=64 N_TEST=64 QUIET_CHECK=0 bench/run.sh   # test the script itself (results NOT VALID)
#
# Environment:
#   N            training images (the first N, one pass; default 3200)
#   N_TEST       test images for inference and accuracy (the first N_TEST; default 1000)
#   THREADS      threads of every program (default 2)
#   RUNS         runs of each program (default 3; orders cycle A B C, C B A, B C A)
#   PROGRAMS     which programs (default "snnc snntorch spikingjelly")
#   SNNC         snnc binary to use (default: `cargo build --release` and target/release/snnc)
#   VENV         Python environment (default bench/.venv; created with torch, snntorch,
#                spikingjelly, numpy from PyPI when they are not importable there)
#   DATA_DIR     Fashion-MNIST gzip IDX files (default Debian's /usr/share/datasets/fashion-mnist)
#   NICE         niceness of every run (default 0)
#   QUIET_CHECK  1 (default): before each run require the 1-minute load average < LOAD_MAX and
#                no other process busier than BUSY_PCT % of a core (bench/quiet.py), waiting
#                up to QUIET_WAIT s (default 300) for the load to settle, else refuse (exit 3).
#                0: skip the check, for testing the script only: the output says
#                "NOT VALID: machine not checked quiet".
#   LOAD_MAX (0.5), BUSY_PCT (10), QUIET_WAIT (300)
#
# Output: bench/out/summary.md (markdown table, also printed), bench/out/summary.json, and
# every run's raw output, /usr/bin/time -v and log under bench/out/raw/ (git-ignored).
set -euo pipefail

cd "$(dirname "$0")/.."
N="${N:-3200}"
N_TEST="${N_TEST:-1000}"
THREADS="${THREADS:-2}"
RUNS="${RUNS:-3}"
PROGRAMS="${PROGRAMS:-snnc snntorch spikingjelly}"
DATA_DIR="${DATA_DIR:-/usr/share/datasets/fashion-mnist}"
NICE="${NICE:-0}"
QUIET_CHECK="${QUIET_CHECK:-1}"
LOAD_MAX="${LOAD_MAX:-0.5}"
BUSY_PCT="${BUSY_PCT:-10}"
QUIET_WAIT="${QUIET_WAIT:-300}"
VENV="${VENV:-bench/.venv}"
NETWORK=networks/fashion-mnist/agd/convnet.snn
BATCH=32
TIMESTEPS=10
OUT=bench/out
RAW="$OUT/raw"

die() { echo "bench/run.sh: $*" >&2; exit 2; }
for v in N N_TEST THREADS RUNS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
[[ "$NICE" =~ ^-?[0-9]+$ ]] || die "NICE must be an integer, got '$NICE'"
for v in LOAD_MAX BUSY_PCT QUIET_WAIT; do
    [[ "${!v}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$v must be a non-negative number, got '${!v}'"
done
[[ "$QUIET_CHECK" == 0 || "$QUIET_CHECK" == 1 ]] || die "QUIET_CHECK must be 0 or 1, got '$QUIET_CHECK'"
for p in $PROGRAMS; do
    case "$p" in snnc | snntorch | spikingjelly) ;; *) die "unknown program '$p' in PROGRAMS" ;; esac
done
[[ -f "$DATA_DIR/train-images-idx3-ubyte.gz" ]] || die "no Fashion-MNIST in $DATA_DIR (set DATA_DIR)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"

wants() { [[ " $PROGRAMS " == *" $1 "* ]]; }

# --- the Python environment: built here if it cannot import what the peers need
if wants snntorch || wants spikingjelly; then
    if ! "$VENV/bin/python" -c "import torch, snntorch, spikingjelly, numpy" 2>/dev/null; then
        echo "== setting up $VENV (torch, snntorch, spikingjelly, numpy from PyPI; ~5.5 GB)" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --upgrade pip
        # PyPI's Linux torch wheel needs its CUDA packages even on CPU: torch imports fail
        # without libcublasLt, so `--no-deps` does not work.
        "$VENV/bin/pip" install --quiet torch numpy snntorch spikingjelly
    fi
fi

# --- snnc
SNNC_GIVEN="${SNNC:-}"
if wants snnc; then
    if [[ -z "${SNNC:-}" ]]; then
        cargo build --release --bin snnc >&2
        SNNC=target/release/snnc
        snnc_id="commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo +dirty)"
    else
        snnc_id="$SNNC, $("$SNNC" --version 2>/dev/null | head -n 1)"
    fi
    [[ -x "$SNNC" ]] || die "snnc binary '$SNNC' is not executable"
    SNNC="$(realpath "$SNNC")"
else
    snnc_id="not run"
fi

# A refused or broken invocation must not leave an older summary looking like its result.
rm -rf "$RAW" "$OUT/summary.md" "$OUT/summary.json"
mkdir -p "$RAW"
: >"$RAW/runs.tsv"

load1() { cut -d' ' -f1 /proc/loadavg; }

# Orders of the rounds: A B C, C B A, B C A, then again.
read -r -a progs <<<"$PROGRAMS"
n=${#progs[@]}
orders=()
for ((r = 0; r < RUNS; r++)); do
    order=()
    case $((r % 3)) in
    0) for ((i = 0; i < n; i++)); do order+=("${progs[i]}"); done ;;
    1) for ((i = n - 1; i >= 0; i--)); do order+=("${progs[i]}"); done ;;
    2) for ((i = 0; i < n; i++)); do order+=("${progs[(i + 1) % n]}"); done ;;
    esac
    orders+=("${order[*]}")
done

command_line="N=$N N_TEST=$N_TEST THREADS=$THREADS RUNS=$RUNS bench/run.sh"
[[ "$PROGRAMS" == "snnc snntorch spikingjelly" ]] || command_line="PROGRAMS='$PROGRAMS' $command_line"
[[ "$NICE" == 0 ]] || command_line="NICE=$NICE $command_line"
[[ -z "${SNNC_GIVEN:-}" ]] || command_line="SNNC=$SNNC_GIVEN $command_line"
[[ "$QUIET_CHECK" == 1 ]] || command_line="QUIET_CHECK=0 $command_line"
S_CORES=$(nproc) S_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) S_SNNC="$snnc_id" S_COMMAND="$command_line" \
S_ORDERS="$(printf '%s\n' "${orders[@]}")" S_NETWORK="$NETWORK" S_N="$N" S_N_TEST="$N_TEST" \
S_T="$TIMESTEPS" S_BATCH="$BATCH" S_THREADS="$THREADS" S_RUNS="$RUNS" S_NICE="$NICE" \
S_PROGRAMS="$PROGRAMS" S_QUIET="$QUIET_CHECK" S_LOAD_MAX="$LOAD_MAX" S_BUSY="$BUSY_PCT" S_DATA="$DATA_DIR" \
    python3 - "$RAW/settings.json" <<'PY'
import json, os, sys
e = os.environ
json.dump({
    "network": e["S_NETWORK"], "data_dir": e["S_DATA"], "train_images": int(e["S_N"]),
    "test_images": int(e["S_N_TEST"]), "timesteps": int(e["S_T"]), "batch": int(e["S_BATCH"]),
    "threads": int(e["S_THREADS"]), "rounds": int(e["S_RUNS"]), "cores": int(e["S_CORES"]),
    "nice": int(e["S_NICE"]), "programs": e["S_PROGRAMS"].split(),
    "orders": e["S_ORDERS"].splitlines(), "quiet_check": e["S_QUIET"] == "1",
    "load_max": float(e["S_LOAD_MAX"]), "busy_pct": float(e["S_BUSY"]), "date": e["S_DATE"],
    "snnc_commit": e["S_SNNC"], "command": e["S_COMMAND"],
}, open(sys.argv[1], "w"), indent=2)
PY

if [[ "$QUIET_CHECK" != 1 ]]; then
    echo "== QUIET_CHECK=$QUIET_CHECK: the machine is NOT checked; results are NOT VALID" >&2
fi

run_one() { # run_one PROGRAM ROUND POSITION
    local prog=$1 round=$2 pos=$3 tag="$1-$2" result rc=0 before after
    if [[ "$QUIET_CHECK" == 1 ]]; then
        if ! python3 bench/quiet.py --load-max "$LOAD_MAX" --busy-pct "$BUSY_PCT" --wait "$QUIET_WAIT" >&2; then
            echo "bench/run.sh: refusing to time $prog (round $round): the machine is not quiet (see above)" >&2
            exit 3
        fi
    fi
    before=$(load1)
    echo "== round $round: $prog ($N training, $N_TEST test images, T=$TIMESTEPS, batch $BATCH, $THREADS threads; load $before)" >&2
    case "$prog" in
    snnc)
        result="$RAW/$tag/report.json"
        RAYON_NUM_THREADS="$THREADS" /usr/bin/time -v -o "$RAW/$tag.time" nice -n "$NICE" \
            "$SNNC" train "$NETWORK" --data "fashion-mnist:$DATA_DIR" --epochs 1 \
            --train-limit "$N" --test-limit "$N_TEST" --batch "$BATCH" --timesteps "$TIMESTEPS" \
            --out "$RAW/$tag" >"$RAW/$tag.log" 2>&1 || rc=$?
        ;;
    snntorch | spikingjelly)
        result="$RAW/$tag.json"
        OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" \
            /usr/bin/time -v -o "$RAW/$tag.time" nice -n "$NICE" "$VENV/bin/python" "bench/${prog}_fmnist.py" \
            --data-dir "$DATA_DIR" --train-images "$N" --infer-images "$N_TEST" \
            --batch "$BATCH" --timesteps "$TIMESTEPS" --threads "$THREADS" >"$RAW/$tag.log" 2>&1 || rc=$?
        [[ $rc != 0 ]] || tail -n 1 "$RAW/$tag.log" >"$result"
        ;;
    esac
    after=$(load1)
    if [[ $rc != 0 ]]; then
        echo "   $prog failed (exit $rc); the end of $RAW/$tag.log:" >&2
        tail -n 15 "$RAW/$tag.log" >&2
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$prog" "$round" "$pos" "$rc" "$before" "$after" \
        "$result" "$RAW/$tag.time" >>"$RAW/runs.tsv"
}

for ((r = 0; r < RUNS; r++)); do
    read -r -a order <<<"${orders[r]}"
    for ((i = 0; i < ${#order[@]}; i++)); do
        run_one "${order[i]}" $((r + 1)) $((i + 1))
    done
done

python3 bench/bench_summary.py "$RAW" "$OUT/summary.json" "$OUT/summary.md"
