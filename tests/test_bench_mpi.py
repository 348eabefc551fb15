"""apps/bench.py --suite mpi in its quickest form (lenet5, one batch, P = 1 and 2 ranks of the
2 cores' threads, a few steps): the JSON's structure, positive rates, the weights of P = 2
within rounding of P = 1's and a rerun's bit for bit, and the report's table. No timed
assertions: these machines are shared. Skips without mpi4py or mpirun."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("mpi4py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(ROOT, "apps")
sys.path.insert(0, APPS)

import _bench_mpi  # noqa: E402
import _bench_report  # noqa: E402

pytestmark = pytest.mark.skipif(_bench_mpi.find_mpirun() is None,
                                reason="no mpirun (pip install mpich)")


def have(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def test_quick_mpi_suite(tmp_path):
    cmd = [sys.executable, os.path.join(APPS, "bench.py"), "--suite", "mpi", "--quick",
           "--ranks", "1,2", "--mpi-threads", "2", "--nets", "lenet5", "--batches", "64",
           "--json", str(tmp_path / "mpi.json"), "--no-report"]
    run = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "mpi.json") as f:
        result = json.load(f)["results"]["mpi"]
    assert result["status"] == "ok", result
    assert result["ranks"] == [1, 2] and result["cores"] == 2
    torch = have("torch")
    assert result["ddp"] == "ok" if torch else result["ddp"].startswith("not run")
    rows = result["rows"]
    assert [(r["net"], r["batch"], r["ranks"], r["threads_per_rank"]) for r in rows] == [
        ("lenet5", 64, 1, 2), ("lenet5", 64, 2, 1)]
    for r in rows:
        assert r["heterocnn"]["median"] > 0 and len(r["heterocnn"]["repeats"]) == 2
        assert r["comm_s_per_step"]["median"] >= 0 and 0 <= r["comm_share"]["median"] < 1
        assert r["comm_busy_s_per_step"]["median"] >= 0
        assert r["sum_during_backward"] in (True, False)
        assert r["rerun_bit_identical"] is True
        assert r["heterocnn_run"]["steps"] >= 3
        ranks = r["heterocnn_run"]["per_rank"]
        assert len(ranks) == r["ranks"] and all(k["threads"] == r["threads_per_rank"]
                                                for k in ranks)
        if torch:
            assert isinstance(r["ddp"], dict), r["ddp"]  # else why the DDP run failed
            assert r["ddp"]["median"] > 0
            assert r["ratio"] == pytest.approx(r["heterocnn"]["median"] / r["ddp"]["median"])
        else:
            assert r["ddp"].startswith("not run") and r["ratio"] is None
    assert rows[0]["scaling_efficiency"] == 1.0 and rows[0]["weights_max_rel_diff_vs_p1"] == 0
    assert rows[1]["weights_max_rel_diff_vs_p1"] < 1e-4  # the same steps, summed otherwise
    assert result["gpu_rows"] == "skipped: no GPU" or all(
        r["heterocnn"]["median"] > 0 and r["gpu_alone"]["median"] > 0 for r in result["gpu_rows"])
    text = _bench_report.mpi_tables(result)
    assert "| lenet5 | 64 | 2 x 1 |" in text and "| yes |" in text
