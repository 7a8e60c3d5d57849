"""Prints a markdown table of the report.json files under a folder (bench/agd-results.sh)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results")
print("| run | method | T | epochs | test accuracy | train img/s | infer img/s | EE | wall s |")
print("|---|---|---|---|---|---|---|---|---|")
for report in sorted(root.glob("*/report.json")):
    r = json.loads(report.read_text())
    energy = r.get("energy") or {}
    ee = energy.get("ee")
    print(
        f"| {report.parent.name} | {r['method']} | {r['timesteps']} | {len(r['epochs'])} "
        f"| {100 * r['test_accuracy']:.2f}% | {r['train_images_per_s']:.1f} | {r['infer_images_per_s']:.1f} "
        f"| {ee if ee is None else f'{ee:.2f}x'} | {r['wall_s']:.0f} |"
    )
