"""apps/bench.py --suite fusion in its quickest form (bnnet, one small batch, the CPU, two
repeats of a fresh process per setting): the JSON's structure (both settings measured, each
child ran with the setting it was given, the pairs of the net), and the report's table. No
timed assertions: these machines are shared."""

import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(ROOT, "apps")
sys.path.insert(0, APPS)

import _bench_report  # noqa: E402


def test_quick_fusion_suite_and_its_report(tmp_path):
    cmd = [sys.executable, os.path.join(APPS, "bench.py"), "--suite", "fusion", "--quick",
           "--nets", "bnnet", "--batches", "8", "--images", "16", "--repeats", "2",
           "--devices", "cpu", "--json", str(tmp_path / "fusion.json"), "--no-report"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "fusion.json") as f:
        out = json.load(f)
    result = out["results"]["fusion"]
    assert result["status"] == "ok", result
    (row,) = result["rows"]
    assert "error" not in row, row.get("error")
    assert (row["net"], row["batch"], row["device"], row["steps"]) == ("bnnet", 8, "cpu", 2)
    for mode in ("fused", "unfused"):
        assert len(row[mode]["repeats"]) == 2 and row[mode]["min"] > 0
    assert row["speedup"] > 0
    # bnnet: seven Conv2d-BatchNorm2d-ReLU blocks, no ReLU after a Conv2d or a Linear
    assert list(row["pairs"]) == ["BatchNorm2d+ReLU"]
    pair = row["pairs"]["BatchNorm2d+ReLU"]
    assert pair["count"] == 7 and pair["fused_us"]["min"] > 0 and pair["unfused_us"]["min"] > 0

    md = tmp_path / "BENCHMARKS.md"
    shutil.copy(os.path.join(ROOT, "BENCHMARKS.md"), md)
    assert _bench_report.regenerate(str(tmp_path), str(md)) == 0
    block = md.read_text().split("<!-- bench:fusion -->")[1].split("<!-- /bench:fusion -->")[0]
    assert "| cpu | bnnet | 8 |" in block and "BatchNorm2d+ReLU us a step" in block
    assert "--quick smoke run" in block
