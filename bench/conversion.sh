#!/usr/bin/env bash
# Conversion bench (issue 8): the converted vgg-backres on the first N test images at T time
# steps, step-by-step runtime on its event-driven path vs its dense path, beside the source
# ANN's own inference time × T (the same weights, ReLU, one pass).
#
#   bench/conversion.sh                          # N=1000, T=100, 3 runs of each, alternating
#   WEIGHTS=runs/x/weights.safetensors bench/conversion.sh
#   QUIET_CHECK=0 N=20 T=3 DATA=embedded bench/conversion.sh   # testing the script only
#
# Environment:
#   NET         the network (default networks/fashion-mnist/conversion/vgg-backres.snn)
#   WEIGHTS     a converted checkpoint of NET (`snnc train --method conversion`); default: one
#               is trained once into bench/out/conversion-ckpt/ (TRAIN_LIMIT training images,
#               default 6000, EPOCHS default 2) and reused by later runs
#   N, T        test images (the first N, default 1000) and time steps (default 100)
#   BATCH       images per simulated batch (default 100)
#   RUNS        timed runs of each of the three (default 3); medians are reported
#   THREADS     RAYON_NUM_THREADS (default 2: both cores)
#   DATA        snnc's --data (default: snnc's default, Fashion-MNIST)
#   SNNC        the binary (default target/release/snnc, built unless SKIP_BUILD=1)
#   QUIET_CHECK before every timed run the script checks that the machine is quiet with
#               bench/quiet.py (1-minute load average < 0.5, waited for up to QUIET_WAIT s,
#               default 300; no other process using > 10 % of a core over 2 s) and refuses,
#               saying why, when it is not. QUIET_CHECK=0 skips the check:
#               only for testing the script, the timings then mean nothing.
#
# The path is chosen with `snnc eval --sim-path event|dense|ann`. Wall, user and system time
# and peak RSS of each run come from /usr/bin/time; images/s is snnc's own figure (the
# evaluation loop only, without start-up and data loading). Raw outputs go to bench/out/.
set -euo pipefail

cd "$(dirname "$0")/.."
NET="${NET:-networks/fashion-mnist/conversion/vgg-backres.snn}"
N="${N:-1000}"
T="${T:-100}"
BATCH="${BATCH:-100}"
RUNS="${RUNS:-3}"
THREADS="${THREADS:-2}"
TRAIN_LIMIT="${TRAIN_LIMIT:-6000}"
EPOCHS="${EPOCHS:-2}"
QUIET_CHECK="${QUIET_CHECK:-1}"
SNNC="${SNNC:-target/release/snnc}"
OUT=bench/out/conversion
mkdir -p "$OUT"
data_args=()
if [[ -n "${DATA:-}" ]]; then
    data_args=(--data "$DATA")
fi

die() {
    echo "conversion bench: $*" >&2
    exit 1
}

for v in N T BATCH RUNS THREADS TRAIN_LIMIT EPOCHS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

if [[ "$SNNC" == target/release/snnc && "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release --bin snnc >&2
fi
[[ -x "$SNNC" ]] || die "no snnc binary at $SNNC"

# Refuses (exit 1, saying why) unless the machine is quiet.
check_quiet() {
    if [[ "$QUIET_CHECK" == 0 ]]; then
        echo "   (QUIET_CHECK=0: not checking the load; these timings mean nothing)" >&2
        return
    fi
    # bench/quiet.py (shared with bench/run.sh) refuses at once when another process is busy
    # and waits out a load average still high from the previous run for up to QUIET_WAIT s.
    local line
    line=$(python3 bench/quiet.py --load-max 0.5 --busy-pct 10 --wait "${QUIET_WAIT:-300}") ||
        die "refusing to time: the machine is not quiet (see the reason above)"
    echo "   $line, no other busy process" >&2
}

# A converted checkpoint.
if [[ -z "${WEIGHTS:-}" ]]; then
    WEIGHTS="bench/out/conversion-ckpt/weights.safetensors"
    if [[ ! -f "$WEIGHTS" ]]; then
        echo "== training a converted checkpoint of $NET ($TRAIN_LIMIT images, $EPOCHS epochs; not timed)" >&2
        RAYON_NUM_THREADS="$THREADS" "$SNNC" train "$NET" --method conversion \
            "${data_args[@]}" --epochs "$EPOCHS" --train-limit "$TRAIN_LIMIT" \
            --test-limit "$N" --eval-timesteps "$T" \
            --out bench/out/conversion-ckpt >"$OUT/train.log" 2>&1 ||
            { tail -n 20 "$OUT/train.log" >&2; die "training the checkpoint failed; see $OUT/train.log"; }
    fi
fi
[[ -f "$WEIGHTS" ]] || die "no checkpoint at $WEIGHTS"

# run PATH I: one timed evaluation; appends "wall user sys rss_mb images_per_s accuracy" to
# $OUT/PATH.txt.
run_one() {
    local path=$1 i=$2 log="$OUT/$1-$2.log" tm="$OUT/$1-$2.time"
    echo "== run $i: --sim-path $path" >&2
    check_quiet
    RAYON_NUM_THREADS="$THREADS" /usr/bin/time -f "%e %U %S %M" -o "$tm" \
        "$SNNC" eval "$NET" --weights "$WEIGHTS" "${data_args[@]}" --test-limit "$N" \
        --timesteps "$T" --batch "$BATCH" --sim-path "$path" >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; die "snnc eval --sim-path $path failed; see $log"; }
    local line ips acc
    line=$(grep -E 'accuracy .* images/s' "$log" | tail -n 1)
    ips=$(sed -E 's/.* ([0-9.]+) images\/s.*/\1/' <<<"$line")
    acc=$(sed -E 's/.*accuracy ([0-9.]+)%.*/\1/' <<<"$line")
    [[ -n "$ips" && -n "$acc" ]] || die "cannot read the result of $log"
    read -r wall user sys rss <"$tm"
    echo "$wall $user $sys $((rss / 1024)) $ips $acc" >>"$OUT/$path.txt"
    echo "   wall ${wall} s, user ${user} s, sys ${sys} s, ${ips} images/s, accuracy ${acc}%" >&2
}

rm -f "$OUT"/{event,dense,ann}.txt
for ((i = 1; i <= RUNS; i++)); do
    if ((i % 2)); then order=(event dense ann); else order=(ann dense event); fi
    for p in "${order[@]}"; do
        run_one "$p" "$i"
    done
done

median() { # median FILE COLUMN
    awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ann_ips=$(median "$OUT/ann.txt" 5)
# The ANN's inference time × T, from its evaluation loop: N / (images/s) · T.
ann_x_t=$(awk -v n="$N" -v ips="$ann_ips" -v t="$T" 'BEGIN { printf "%.3f", n / ips * t }')
{
    echo "# conversion bench: $(basename "$NET"), first $N test images, T = $T, batch $BATCH, $THREADS threads, medians of $RUNS runs"
    echo "# weights: $WEIGHTS; quiet check: $([[ $QUIET_CHECK == 0 ]] && echo OFF, timings meaningless || echo on)"
    printf "%-8s %10s %10s %10s %8s %12s %10s %9s %14s\n" path wall_s user_s sys_s rss_mb images_per_s eval_s accuracy "vs_ANN_x_T"
    for p in event dense ann; do
        ips=$(median "$OUT/$p.txt" 5)
        eval_s=$(awk -v n="$N" -v ips="$ips" 'BEGIN { printf "%.3f", n / ips }')
        if [[ $p == ann ]]; then
            ratio="(x T: ${ann_x_t} s)"
        else
            ratio=$(awk -v e="$eval_s" -v a="$ann_x_t" 'BEGIN { printf "%.2f", e / a }')
        fi
        printf "%-8s %10s %10s %10s %8s %12s %10s %9s %14s\n" "$p" \
            "$(median "$OUT/$p.txt" 1)" "$(median "$OUT/$p.txt" 2)" "$(median "$OUT/$p.txt" 3)" \
            "$(median "$OUT/$p.txt" 4)" "$ips" "$eval_s" "$(median "$OUT/$p.txt" 6)%" "$ratio"
    done
    echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/summary.txt"
