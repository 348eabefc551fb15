"""Determinism: with seed=, CPU training is bit-reproducible for a fixed thread count.

Each run is a fresh Python process (a new OpenMP runtime, new allocations, new addresses), so
nothing carried over inside one process can make two runs agree. The GPU counterpart is
tests/test_cuda.py::test_gpu_training_is_reproducible.
"""

import subprocess
import sys

import numpy as np
import pytest

TRAIN = """
import sys
import numpy as np
import heterocnn as hc
threads, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
hc.set_threads(threads)
X, y = hc.datasets.fashion_mnist("train", sample=True).as_tuple()
model = hc.models.lenet5(seed=seed)
opt = hc.SGD(model, lr=0.02, momentum=0.9, weight_decay=1e-4)
history = hc.fit(model, opt, (X[:640], y[:640]), epochs=2, batch_size=64, seed=seed,
                 progress=False)
np.savez(out, loss=np.array(history["loss"]), **model.state_dict())
"""


def train_in_a_fresh_process(tmp_path, threads, seed, run):
    """state_dict (and the per-epoch losses, key "loss") of lenet5 after 2 epochs of hc.fit."""
    out = tmp_path / f"threads{threads}-seed{seed}-run{run}.npz"
    r = subprocess.run([sys.executable, "-c", TRAIN, str(threads), str(seed), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def assert_bit_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs between two runs"


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_training_is_bit_reproducible_for_a_fixed_thread_count(tmp_path, threads):
    first = train_in_a_fresh_process(tmp_path, threads, seed=7, run=1)
    second = train_in_a_fresh_process(tmp_path, threads, seed=7, run=2)
    assert_bit_identical(first, second)
