#!/usr/bin/env python3
"""Summarises the runs of bench/run.sh: medians per program and snnc's ratios to the best peer.

Usage: bench_summary.py RAW_DIR OUT_JSON OUT_MD
RAW_DIR holds runs.tsv (program, round, order, rc, load before, load after, result json,
/usr/bin/time -v file) and settings.json, both written by run.sh. Each run's figures come from
its result JSON (snnc: its report.json; the peers: their one-line JSON) and its peak RSS from
/usr/bin/time -v. Writes the JSON summary and the markdown table; prints the table.
Standard library only.
"""
import json
import pathlib
import statistics
import sys

PROGRAMS = ["snnc", "snntorch", "spikingjelly"]
NAMES = {"snnc": "snnc", "snntorch": "snnTorch", "spikingjelly": "SpikingJelly"}


def peak_rss_mb(path):
    try:
        for line in pathlib.Path(path).read_text().splitlines():
            if "Maximum resident set size" in line:
                return int(line.split(":")[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None


def median(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def main():
    raw, out_json, out_md = map(pathlib.Path, sys.argv[1:4])
    settings = json.loads((raw / "settings.json").read_text())
    runs = []
    for line in (raw / "runs.tsv").read_text().splitlines():
        prog, rnd, order, rc, load_before, load_after, result, timefile = line.split("\t")
        r = read_json(result) if rc == "0" else None
        runs.append({
            "program": prog,
            "round": int(rnd),
            "position": int(order),
            "exit_status": int(rc),
            "load_before": float(load_before),
            "load_after": float(load_after),
            "train_images_per_s": r and r.get("train_images_per_s"),
            "infer_images_per_s": r and r.get("infer_images_per_s"),
            "test_accuracy": r and r.get("test_accuracy"),
            "peak_rss_mb": peak_rss_mb(timefile) if rc == "0" else None,
            "result": result,
        })

    medians = {}
    for p in PROGRAMS:
        mine = [r for r in runs if r["program"] == p]
        if not mine:
            continue
        medians[p] = {k: median([r[k] for r in mine]) for k in
                      ("train_images_per_s", "infer_images_per_s", "test_accuracy", "peak_rss_mb")}
        medians[p]["runs"] = len(mine)
        medians[p]["failed_runs"] = sum(r["exit_status"] != 0 for r in mine)

    def best(key, pick):
        vals = [(medians[p][key], p) for p in ("snntorch", "spikingjelly")
                if p in medians and medians[p][key] is not None]
        return pick(vals) if vals else (None, None)

    ratios = {}
    sn = medians.get("snnc")
    for key, pick, what in (("train_images_per_s", max, "snnc / fastest peer"),
                            ("infer_images_per_s", max, "snnc / fastest peer"),
                            ("peak_rss_mb", min, "snnc / smallest peer")):
        val, peer = best(key, pick)
        ratio = sn[key] / val if sn and sn[key] is not None and val else None
        ratios[key] = {"ratio": ratio, "peer": peer, "meaning": what}
    acc_val, acc_peer = best("test_accuracy", max)
    acc_diff = (100.0 * (sn["test_accuracy"] - acc_val)
                if sn and sn["test_accuracy"] is not None and acc_val is not None else None)
    ratios["test_accuracy"] = {"points": acc_diff, "peer": acc_peer,
                               "meaning": "snnc − most accurate peer, percentage points"}

    valid = settings["quiet_check"] and all(r["exit_status"] == 0 for r in runs)
    summary = {
        "valid": valid,
        "validity": ("machine checked quiet before every run" if settings["quiet_check"]
                     else "NOT VALID: machine not checked quiet"),
        "settings": settings,
        "medians": medians,
        "ratios": ratios,
        "runs": runs,
    }
    out_json.write_text(json.dumps(summary, indent=2) + "\n")

    md = []
    if not settings["quiet_check"]:
        md += ["**NOT VALID: machine not checked quiet** (QUIET_CHECK=0; for testing the script only).", ""]
    if any(r["exit_status"] != 0 for r in runs):
        md += ["**Some runs failed** (see the runs below); their medians leave them out.", ""]
    md += ["| program | training images/s | inference images/s | test accuracy | peak RSS (MB) |",
           "|---|---:|---:|---:|---:|"]
    for p, m in medians.items():
        acc = None if m["test_accuracy"] is None else 100 * m["test_accuracy"]
        md.append(f"| {NAMES[p]} | {fmt(m['train_images_per_s'], '.1f')} | "
                  f"{fmt(m['infer_images_per_s'], '.1f')} | {fmt(acc, '.1f')} % | "
                  f"{fmt(m['peak_rss_mb'], '.0f')} |")
    rt = lambda k: fmt(ratios[k]["ratio"], ".2f") + "×" + (
        f" ({NAMES[ratios[k]['peer']]})" if ratios[k]["peer"] else "")
    md.append(f"| **snnc / best peer** | {rt('train_images_per_s')} | {rt('infer_images_per_s')} | "
              f"{fmt(acc_diff, '+.1f')} points | {rt('peak_rss_mb')} |")
    s = settings
    md += ["",
           f"Medians of {s['rounds']} runs each (orders: {'; '.join(s['orders'])}). "
           f"networks/fashion-mnist/agd/convnet.snn: the first {s['train_images']} Fashion-MNIST training "
           f"images (one pass), {s['test_images']} test images, T = {s['timesteps']}, batch {s['batch']}, "
           f"{s['threads']} threads, {s['cores']} cores; {s['date']}; snnc: {s['snnc_commit']}.",
           "Best peer: the faster (images/s), the smaller (RSS) or the more accurate of snnTorch and SpikingJelly.",
           "",
           "| run | program | exit | load before | load after | train img/s | infer img/s | accuracy | peak RSS MB |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        acc = None if r["test_accuracy"] is None else 100 * r["test_accuracy"]
        md.append(f"| {r['round']}.{r['position']} | {NAMES[r['program']]} | {r['exit_status']} | "
                  f"{r['load_before']:.2f} | {r['load_after']:.2f} | "
                  f"{fmt(r['train_images_per_s'], '.1f')} | {fmt(r['infer_images_per_s'], '.1f')} | "
                  f"{fmt(acc, '.1f')} | {fmt(r['peak_rss_mb'], '.0f')} |")
    md += ["", f"Reproduce: `{s['command']}`"]
    out_md.write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
