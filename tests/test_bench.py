"""apps/bench.py: the JSON of a tiny run, the report's regeneration of BENCHMARKS.md's marked
tables, and the errors for bad arguments. No timed assertions: these machines are shared."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(ROOT, "apps")
BENCH = os.path.join(APPS, "bench.py")
sys.path.insert(0, APPS)

import bench  # noqa: E402
import _bench_report  # noqa: E402

SUITES = ["cpu", "layers", "gemm", "memory"]


def have(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run of four suites on the embedded sample: (its JSON, its folder)."""
    folder = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, BENCH, "--suite", ",".join(SUITES), "--quick", "--nets", "lenet5",
           "--batches", "16", "--images", "32", "--repeats", "2", "--memory-steps", "1",
           "--json", str(folder) + os.sep, "--no-report"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=str(folder), timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    (path,) = folder.glob("*.json")
    assert path.name.startswith("cpu_layers_gemm_memory-")
    with open(path) as f:
        return json.load(f), folder


def check_figure(fig, repeats):
    assert set(fig) >= {"median", "min", "max", "repeats"}
    assert len(fig["repeats"]) == repeats
    assert fig["min"] <= fig["median"] <= fig["max"]
    assert fig["min"] == min(fig["repeats"]) and fig["max"] == max(fig["repeats"])


def test_run_json_schema(tiny_run):
    out, _ = tiny_run
    assert out["schema"] == "heterocnn-bench/1"
    assert out["suites"] == SUITES
    m = out["machine"]
    assert m["cores"] >= 1 and m["threads"] == 2 and m["cpu"]
    assert len(m["load_average_start"]) == 3 and len(m["load_average_end"]) == 3
    v = out["versions"]
    assert v["heterocnn"]["version"] and v["numpy"] and "numpy_blas" in v
    assert all(k in v for k in ("torch", "torch_cuda", "cudnn"))
    torch = have("torch")
    for name in SUITES:
        assert out["results"][name]["status"] == "ok", out["results"][name]

    cpu = out["results"]["cpu"]
    assert cpu["timing"]["heterocnn"]
    (row,) = cpu["rows"]
    assert (row["net"], row["batch"], row["steps"]) == ("lenet5", 16, 2)
    check_figure(row["heterocnn"], 2)
    if torch:
        check_figure(row["torch"], 2)
        assert row["ratio"] == pytest.approx(row["heterocnn"]["median"] / row["torch"]["median"])
    else:
        assert row["torch"].startswith("not run") and row["ratio"] is None

    runs = out["results"]["layers"]["runs"]
    assert [r["device"] for r in runs][0] == "cpu"
    first = runs[0]["contenders"]
    assert set(first) == ({"heterocnn", "torch"} if torch else {"heterocnn"})
    for c in first.values():
        names = [t["layer"] for t in c["layers"]]
        assert [n.split("(")[0] for n in names] == ["Conv2d", "MaxPool2d", "Conv2d",
                                                   "MaxPool2d", "Linear", "Linear", "Linear"]
        for t in c["layers"]:
            check_figure(t["forward_us"], 2)
            check_figure(t["backward_us"], 2)

    gemm = out["results"]["gemm"]
    assert gemm["cpu"]["rows"] and all(r["rel_err"] < 1e-4 for r in gemm["cpu"]["rows"])
    check_figure(gemm["cpu"]["rows"][0]["ours"], 2)
    lab = gemm["cuda_lab"]  # the lab's table on a GPU machine, else why it did not run
    if out["machine"]["gpu"]:
        assert lab["status"] == "ok" and lab["validation_failures"] == 0, lab
    else:
        assert lab.startswith("skipped"), lab

    rows = out["results"]["memory"]["rows"]
    assert {r["framework"] for r in rows} == ({"heterocnn", "torch"} if torch else {"heterocnn"})
    for r in rows:
        assert "error" not in r, r.get("error")
        assert r["peak_rss"]["median"] >= r["peak_rss_above_import"]["median"] >= 0
        if r["framework"] == "heterocnn":
            place = "cpu" if r["device"] == "cpu" else "cuda:0"  # where the model trained
            assert r["framework_estimate"][place]["buffers"] > 0


def marked(text):
    """{suite: text between its markers} and the text with every marked block emptied."""
    blocks = dict((m.group(2), m.group(3)) for m in _bench_report.MARK.finditer(text))
    return blocks, _bench_report.MARK.sub(lambda m: m.group(1) + m.group(4), text)


def test_report_regenerates_only_the_marked_tables(tiny_run, tmp_path):
    _, folder = tiny_run
    md = tmp_path / "BENCHMARKS.md"
    shutil.copy(os.path.join(ROOT, "BENCHMARKS.md"), md)
    before = md.read_text()
    blocks, prose = marked(before)
    assert set(blocks) >= set(_bench_report.SUITES)
    assert _bench_report.regenerate(str(folder), str(md)) == 0
    after = md.read_text()
    new_blocks, new_prose = marked(after)
    assert new_prose == prose  # the hand-written text is untouched
    assert re.search(r"\| lenet5 \| 16 \| [\d,]+ ±", new_blocks["cpu"])
    assert "lenet5 Conv2d" in new_blocks["layers"]
    assert "square 128" in new_blocks["gemm"]
    assert "| lenet5 | 16 |" in new_blocks["memory"]
    assert "--quick smoke run" in new_blocks["cpu"]
    assert "Not measured yet" in new_blocks["gpu"] and "Not measured yet" in new_blocks["tta"]
    if have("matplotlib"):
        for suite in SUITES:
            pngs = list(folder.glob(f"{suite}-*.png"))
            assert pngs and pngs[0].stat().st_size > 1000
            assert f"]({os.path.relpath(pngs[0], tmp_path)})" in new_blocks[suite]
    # Regenerating again from the same JSON gives the same file.
    assert _bench_report.regenerate(str(folder), str(md)) == 0
    assert md.read_text() == after


def test_report_without_markers_says_so(tmp_path, capsys):
    md = tmp_path / "notes.md"
    md.write_text("# no markers here\n")
    assert _bench_report.regenerate(str(tmp_path), str(md)) == 1
    assert "no <!-- bench:SUITE -->" in capsys.readouterr().out
    assert md.read_text() == "# no markers here\n"


@pytest.mark.parametrize("argv, message", [
    (["--suite", "cpu,nope"], "unknown suite 'nope'"),
    (["--suite", ""], "unknown suite"),
    ([], "nothing to do"),
    (["--suite", "cpu", "--threads", "0"], "'0' is not a positive integer"),
    (["--suite", "cpu", "--nets", "resnet"], "unknown net 'resnet'"),
    (["--suite", "cpu", "--batches", "64,x"], "'x' is not a positive integer"),
    (["--suite", "tta", "--tta-devices", "tpu"], "--tta-devices takes cpu and/or cuda"),
    (["--suite", "layers", "--devices", "gpu"], "--devices takes cpu and/or cuda"),
    (["--suite", "cpu", "--report"], "--report regenerates from existing JSON"),
    (["--suite", "mpi", "--ranks", "1,0"], "'0' is not a positive integer"),
    (["--suite", "mpi", "--mpi-seconds", "nan"], "'nan' is not a positive number"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_suite_list():
    assert bench.suite_list("all") == list(bench.SUITES)
    assert bench.suite_list("gemm, cpu") == ["cpu", "gemm"]


def test_bench_gpu_runs_the_gpu_suite(tmp_path):
    """apps/bench_gpu.py is `bench.py --suite gpu`: its JSON holds that suite, measured where
    there is a GPU and skipped, saying why, where there is none."""
    cmd = [sys.executable, os.path.join(APPS, "bench_gpu.py"), "--quick", "--nets", "lenet5",
           "--batches", "16", "--images", "32", "--repeats", "2", "--no-lab",
           "--json", str(tmp_path / "gpu.json"), "--no-report"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "gpu.json") as f:
        out = json.load(f)
    assert out["suites"] == ["gpu"] and "--suite gpu" in out["command"]
    gpu = out["results"]["gpu"]
    if out["machine"]["gpu"]:
        assert [r["net"] for r in gpu["rows"]] == ["lenet5"]
    else:
        assert gpu["status"].startswith("skipped: no usable GPU")
