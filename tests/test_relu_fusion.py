"""HC_RELU_FUSION=0 turns ReLU fusion off (read once, at import): hc.build_info() says so, the
step plan then gives each ReLU its own output buffer (more step memory) and runs its forward
and backward on their own, and training gives the results of the fused steps to rounding, on
the CPU and (where there is one) on a GPU, in the captured graphs. Each setting runs in a fresh
process, as the variable is read once."""

import os
import subprocess
import sys

import numpy as np
import pytest

import heterocnn as hc

TRAIN = """
import sys
import numpy as np
import heterocnn as hc
out, device = sys.argv[1], sys.argv[2]
hc.set_threads(2)
rng = np.random.default_rng(0)
result = {"relu_fusion": np.array(hc.build_info()["relu_fusion"])}
# Every fusion the plan makes: Conv2d+ReLU, BatchNorm2d+ReLU, Linear+ReLU, BatchNorm1d+ReLU in
# the forward pass; Conv2d, MaxPool2d, AvgPool2d and Linear applying the ReLU before them in
# the backward pass.
model = hc.Sequential(
    hc.Conv2d(2, 6, 3, padding=1), hc.ReLU(), hc.Conv2d(6, 6, 3, padding=1, bias=False),
    hc.BatchNorm2d(6), hc.ReLU(), hc.MaxPool2d(2), hc.Conv2d(6, 8, 3, padding=1), hc.ReLU(),
    hc.AvgPool2d(2), hc.Flatten(), hc.Linear(8 * 2 * 2, 12), hc.ReLU(), hc.Linear(12, 10),
    hc.BatchNorm1d(10), hc.ReLU(), hc.Linear(10, 4), seed=3).to(device)
opt = hc.SGD(model, lr=0.05, momentum=0.9)
losses = []
for _ in range(4):
    x = rng.standard_normal((6, 2, 9, 10)).astype(np.float32)
    losses.append(model.train_step(x, rng.integers(0, 4, 6), opt))
result["losses"] = np.array(losses)
_, grads = model.loss_and_grads(x, rng.integers(0, 4, 6))
result.update({"grad." + k: v for k, v in grads.items()})
result.update(model.state_dict())
result["step_bytes"] = np.array(sum(b for _, b, _ in model.step_bytes((6, 2, 9, 10)).values()))
model.eval()
result["eval"] = model(x)
np.savez(out, **result)
"""


def train(tmp_path, fusion, device):
    """The arrays TRAIN saves, from a fresh process with HC_RELU_FUSION=fusion (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "HC_RELU_FUSION"}
    if fusion is not None:
        env["HC_RELU_FUSION"] = fusion
    out = tmp_path / f"fusion-{fusion}.npz"
    r = subprocess.run([sys.executable, "-c", TRAIN, str(out), device], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not hc.cuda_available(), reason="no CUDA GPU available"))])
def test_results_with_and_without_relu_fusion_agree(tmp_path, device):
    on, off = train(tmp_path, None, device), train(tmp_path, "0", device)
    assert bool(on.pop("relu_fusion")) and not bool(off.pop("relu_fusion"))
    # the five ReLU outputs, (6, 6, 9, 10) twice, (6, 8, 4, 5), (6, 12) and (6, 10), that
    # the fused plan does not hold
    assert off.pop("step_bytes") - on.pop("step_bytes") == 4 * (2 * 540 * 6 + 960 + 72 + 60)
    assert on.keys() == off.keys()
    tol = 1e-6 if device == "cpu" else 1e-5  # the GPU's fused and plain GEMMs may tile apart
    for k in on:
        np.testing.assert_allclose(off[k], on[k], rtol=tol, atol=tol / 10, err_msg=k)


def test_a_bad_value_is_an_error_at_import():
    env = dict(os.environ, HC_RELU_FUSION="off")
    r = subprocess.run([sys.executable, "-c", "import heterocnn"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "HC_RELU_FUSION must be 0" in r.stderr and "'off'" in r.stderr
