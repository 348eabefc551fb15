"""Data-parallel training over MPI ranks (heterocnn.distributed, hc.fit(comm=...)): runs of
tests/mpi/fit_worker.py under mpirun against one process, and what must go right around
them (reruns, shares, uneven batches, checkpoints, a rank that differs or dies)."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("mpi4py")
import heterocnn as hc  # noqa: E402
from conftest import rel_err  # noqa: E402
from heterocnn.distributed import FixedOrderSum  # noqa: E402

WORKER = os.path.join(os.path.dirname(__file__), "mpi", "fit_worker.py")
MPIRUN = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep
                      + os.environ.get("PATH", ""))
needs_mpirun = pytest.mark.skipif(MPIRUN is None, reason="no mpirun (pip install mpich)")
# One thread a rank; Open MPI's mpirun (a GPU machine's) refuses to start as root without these
# (MPICH's ignores them).
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def run(tmp_path, ranks, *args, name=None, expect=0, timeout=120):
    """Runs the worker on ``ranks`` processes (0: one process without MPI); the npz it wrote
    on rank 0, or the finished process when ``expect`` is not 0."""
    out = tmp_path / (name or f"w{ranks}.npz")
    cmd = [sys.executable, WORKER, str(out), *map(str, args)]
    env = dict(ENV)
    if ranks == 0:
        env["HC_NO_MPI"] = "1"
    else:
        cmd = [MPIRUN, "-n", str(ranks)] + cmd
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if expect == 0:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        with np.load(out) as f:
            return {k: f[k] for k in f.files}
    assert proc.returncode != 0, proc.stdout + proc.stderr
    return proc


def close(a, b, tol=1e-5):
    for key in b:
        assert rel_err(a[key], b[key]) <= tol, key


@needs_mpirun
def test_two_and_three_ranks_match_one_process_and_rerun_bit_identical(tmp_path):
    # 601 samples in batches of 64: an uneven last batch, and not divisible by the ranks
    one = run(tmp_path, 0, "--samples", 601)
    two = run(tmp_path, 2, "--samples", 601)
    three = run(tmp_path, 3, "--samples", 601)  # oversubscribed on a 2-core machine
    close(two, one)
    close(three, one)
    again = run(tmp_path, 2, "--samples", 601, name="again.npz")
    for key in two:
        np.testing.assert_array_equal(again[key], two[key])


@needs_mpirun
def test_unequal_shares_match_one_process(tmp_path):
    # lenet5 with average pooling: max pooling sends a window's gradient to the first of its
    # largest values, and where two are within rounding of each other the 1e-7 that the ranks'
    # sums differ by can send it to the other one, a jump far above 1e-5 in the first layer's
    # momentum. That happened with max pooling at batch 37 on the Xeon host of the GPU
    # machine (2026-12-03); `python tools/dist_pool_sweep.py` on the EPYC: with max pooling 2 of
    # 34 runs (17 batch sizes from 29 to 101, two share sets) above 1e-5, with average pooling
    # none (at most 2e-6). The equal-share test above keeps max pooling.
    one = run(tmp_path, 0, "--batch", 37, "--avgpool")
    close(run(tmp_path, 2, "--batch", 37, "--shares", "3,1", "--avgpool"), one)
    # a share so small that a rank gets no rows of some batches
    close(run(tmp_path, 3, "--batch", 37, "--shares", "20,1,1", "--avgpool", name="tiny.npz"),
          one)


@needs_mpirun
def test_batchnorm_and_dropout_ranks_stay_equal(tmp_path):
    """Each rank normalises its own rows and draws its own Dropout stream; after every step the
    BatchNorm statistics of the first rank with rows are everyone's (as torch DDP's rank 0
    buffers): the ranks end with the same weights and buffers, bit for bit."""
    first = run(tmp_path, 2, "--bn", "--every-rank", "--batch", 37, "--shares", "3,1")
    ranks = [np.load(tmp_path / f"w2.npz.{r}.npz") for r in range(2)]
    assert "1.running_var" in first and "3.rng_state" in first
    for k in ranks[0].files:
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k], err_msg=k)
    assert np.isfinite(first["loss"]).all() and first["1.num_batches_tracked"] == 17


@needs_mpirun
def test_sums_during_the_backward_pass_are_the_sums_after_it(tmp_path):
    """Buckets of 5000 floats (lenet5's 62k in 13) summed while the backward pass runs, after
    it, or as the first steps measure faster: the same weights, bit for bit, and those of one
    process to rounding; BatchNorm/Dropout too."""
    after = run(tmp_path, 2, "--overlap", "off", "--bucket", 5000, name="after.npz")
    during = run(tmp_path, 2, "--overlap", "on", "--bucket", 5000, name="during.npz")
    chosen = run(tmp_path, 3, "--overlap", "auto", "--bucket", 5000, name="auto.npz")
    for key in after:
        np.testing.assert_array_equal(during[key], after[key], err_msg=key)
    close(after, run(tmp_path, 0))
    close(chosen, after)
    bn = [run(tmp_path, 2, "--bn", "--overlap", o, "--bucket", 300, name=f"bn-{o}.npz")
          for o in ("off", "on")]
    for key in bn[0]:
        np.testing.assert_array_equal(bn[1][key], bn[0][key], err_msg=key)


@needs_mpirun
def test_ranks_with_replicas_of_their_own_match_one_process(tmp_path):
    """Every rank a DataParallel model over two CPU replicas (1 and 2 threads): the rank's
    gradients are its replicas' sum, summed over the ranks, one update; the result is one
    process's to rounding, and a rerun's bit for bit. lenet5 with average pooling: with max
    pooling a rounding-sized difference can flip a window's maximum, a step of the gradient
    (on an AVX2-only Zen 3, weights within 1.4e-7 of one process's through 16 steps, then 3e-5
    after the last batch of 8 samples; with average pooling 1.4e-7 to the end)."""
    one = run(tmp_path, 0, "--batch", 37, "--avgpool")
    dp = run(tmp_path, 2, "--batch", 37, "--avgpool", "--dp", "cpu,cpu", "--shares", "2,1",
             name="dp.npz")
    close(dp, one)
    again = run(tmp_path, 2, "--batch", 37, "--avgpool", "--dp", "cpu,cpu", "--shares", "2,1",
                name="dp2.npz")
    for key in dp:
        np.testing.assert_array_equal(again[key], dp[key], err_msg=key)


@needs_mpirun
@pytest.mark.skipif(not hc.cuda_available(), reason="needs a CUDA GPU")
def test_ranks_each_on_the_gpu_and_the_cpu_match_one_process(tmp_path):
    """A rank may itself be CPU+GPU: every rank's model DataParallel over cuda:0 and the
    CPU, against one process on the CPU, to rounding."""
    one = run(tmp_path, 0, "--batch", 64)
    both = run(tmp_path, 2, "--batch", 64, "--dp", "cuda,cpu", name="gpu.npz")
    close(both, one)


@needs_mpirun
def test_rank0_checkpoint_and_resume_match_a_straight_run(tmp_path):
    straight = run(tmp_path, 2, "--epochs", 2, name="straight.npz")
    ckpt = tmp_path / "c.safetensors"
    run(tmp_path, 2, "--epochs", 1, "--checkpoint", ckpt, name="first.npz")
    resumed = run(tmp_path, 2, "--epochs", 2, "--resume", ckpt, name="resumed.npz")
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key])


@needs_mpirun
def test_a_rank_that_differs_is_named(tmp_path):
    proc = run(tmp_path, 2, "--rank-seed", "1:7", expect=1)
    assert "rank 1 differs from rank 0 in seed" in proc.stderr


@needs_mpirun
def test_a_rank_that_dies_stops_the_others(tmp_path):
    start = time.perf_counter()
    run(tmp_path, 2, "--epochs", 3, "--die-rank", 1, expect=1, timeout=90)
    assert time.perf_counter() - start < 90


def test_fixed_order_sum_on_one_rank_is_the_vector(rng):
    from mpi4py import MPI

    v = rng.standard_normal(1001).astype(np.float32)
    np.testing.assert_array_equal(FixedOrderSum(MPI.COMM_SELF, bucket=100)(v), v)
    with pytest.raises(hc.InvalidValueError, match="shares"):
        hc.distributed.Group(MPI.COMM_SELF, shares=[1, 2])
    with pytest.raises(hc.InvalidValueError, match="overlap"):
        hc.distributed.Group(MPI.COMM_SELF, overlap="yes")
    with pytest.raises(hc.InvalidValueError, match="bucket"):
        hc.distributed.Group(MPI.COMM_SELF, bucket=0)


@needs_mpirun
def test_cli_distributed_prints_on_rank_0_alone(tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "heterocnn-train")
    proc = subprocess.run([MPIRUN, "-n", "2", cli, "--distributed", "--sample", "--model", "mlp",
                           "--epochs", "1", "--batch-size", "128", "--no-progress",
                           "--save", str(tmp_path / "m.safetensors")],
                          capture_output=True, text=True, timeout=120,
                          env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("test accuracy: ") == 1 and proc.stdout.count("epoch 1: loss") == 1
    model, opt, meta = hc.load(tmp_path / "m.safetensors")  # written once, by rank 0
    assert meta["epoch"] == 1 and opt is not None
