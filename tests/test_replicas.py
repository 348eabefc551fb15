"""Data-parallel replicas (hc.DataParallel, the thesis's Algorithm 2) against one device, and
the gradient seams they stand on (compute_grads with a weight, accumulation)."""

import numpy as np
import pytest

import heterocnn as hc
from conftest import rel_err

F32 = np.float32


def batches(sample, n_batches, batch):
    train, _ = sample
    X = (train.images[: n_batches * batch] / 255).astype(F32)
    y = train.labels[: n_batches * batch].astype(np.int64)
    return [(X[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(n_batches)]


def train(model, data, lr=0.05, **opt):
    o = hc.SGD(model, lr=lr, momentum=0.9, **opt)
    losses = [model.train_step(x, y, o) for x, y in data]
    return model.state_dict(), losses, o


def test_two_cpu_replicas_with_different_threads_match_one_cpu_model(sample):
    # lr 0.02 (the main job's): at 0.05 the 20 steps amplify rounding enough that another
    # build of the same code (the sanitizer pass's) ends 4e-5 apart
    data = batches(sample, 20, 64)
    one, losses_one, _ = train(hc.models.lenet5(seed=3), data, lr=0.02)
    dp = hc.models.lenet5(seed=3).to(hc.DataParallel(["cpu", "cpu"], shares=[2, 1],
                                                     threads=[1, 2]))
    two, losses_two, _ = train(dp, data, lr=0.02)
    for key in one:
        assert rel_err(two[key], one[key]) < 1e-5, key
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5)
    assert isinstance(dp.placement, hc.DataParallel)


def test_replicas_are_reproducible_and_take_uneven_and_empty_shares(sample, rng):
    data = batches(sample, 6, 37)  # odd batches; a batch of 1 gives one replica no rows
    data.append((data[0][0][:1], data[0][1][:1]))
    runs = []
    for _ in range(2):
        m = hc.models.mlp(seed=1).to(hc.DataParallel(["cpu", "cpu", "cpu"],
                                                     shares=[0.6, 0.3, 0.1], threads=[2, 1, 0]))
        runs.append(train(m, data)[0])
    ref = train(hc.models.mlp(seed=1), data)[0]
    for key in ref:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])  # bit for bit
        assert rel_err(runs[0][key], ref[key]) < 1e-5, key


def test_fit_evaluate_checkpoint_and_nan_guard_on_replicas(sample, tmp_path):
    train_set, test_set = sample
    X, y = train_set.images[:2000], train_set.labels[:2000]
    ref = hc.models.lenet5(seed=0)
    hist_ref = hc.fit(ref, hc.SGD(ref, lr=0.02, momentum=0.9), (X, y), 2, 64, seed=4,
                      progress=False)
    dp = hc.models.lenet5(seed=0).to(hc.DataParallel(["cpu", "cpu"], shares=[1, 1],
                                                     threads=[1, 2]))
    opt = hc.SGD(dp, lr=0.02, momentum=0.9)
    path = tmp_path / "dp.safetensors"
    hist = hc.fit(dp, opt, (X, y), 2, 64, seed=4, progress=False, checkpoint=path)
    # Two epochs amplify rounding: one model on 1 and on 2 threads ends its epochs' mean
    # losses 0.4% apart here; the replicas agree with it as closely (the 20-step test above
    # holds them to 1e-5). Their test accuracies, 1000 images of a model still moving fast,
    # came 13 images apart on the 16-core Xeon host (the reference there on 16 threads).
    np.testing.assert_allclose(hist["loss"], hist_ref["loss"], rtol=1e-2)
    assert abs(hc.evaluate(dp, test_set) - hc.evaluate(ref, test_set)) < 0.03
    loaded, lopt, meta = hc.load(path)
    for key, value in dp.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value)
    for key, value in opt.state().items():
        np.testing.assert_array_equal(lopt.state()[key], value)
    # A state_dict loaded into a data-parallel model reaches every replica: training on from
    # it matches a single-device model loaded with the same weights.
    single = hc.models.lenet5(seed=9)
    single.load_state_dict(dp.state_dict())
    fresh = hc.models.lenet5(seed=9).to(hc.DataParallel(["cpu", "cpu"], shares=[1, 3],
                                                        threads=[2, 1]))
    fresh.load_state_dict(dp.state_dict())
    a, _, _ = train(single, batches(sample, 3, 64))
    b, _, _ = train(fresh, batches(sample, 3, 64))
    for key in a:
        assert rel_err(b[key], a[key]) < 1e-5, key
    mlp = hc.models.mlp(seed=0).to(hc.DataParallel(["cpu", "cpu"], shares=[1, 1],
                                                   threads=[1, 2]))
    start = mlp.state_dict()
    with pytest.raises(hc.NonFiniteError, match="NaN/inf at step"):
        hc.fit(mlp, hc.SGD(mlp, lr=1e30, momentum=0.9), (X[:256], y[:256]), 1, 64,
               progress=False)
    for key, value in mlp.state_dict().items():  # back to the epoch's start
        np.testing.assert_array_equal(value, start[key])


def test_gradients_are_weighted_and_accumulated(sample):
    (x, y), = batches(sample, 1, 40)
    m = hc.models.lenet5(seed=2)
    whole = m.loss_and_grads(x, y)[1]
    m.compute_grads(x, y, weight=0.25)
    quarter = m.gradients()
    for key in whole:
        np.testing.assert_allclose(quarter[key], 0.25 * whole[key], rtol=1e-5, atol=1e-9)
    # the mean over 40 rows = 25/40 of the first 25 rows' mean + 15/40 of the others'
    m.compute_grads(x[:25], y[:25], weight=25 / 40)
    m.compute_grads(x[25:], y[25:], weight=15 / 40, accumulate=True)
    summed = m.gradients()
    for key in whole:
        assert rel_err(summed[key], whole[key]) < 1e-5, key
    with pytest.raises(hc.InvalidValueError, match="weight"):
        m.compute_grads(x, y, weight=-1)


def test_two_optimizers_of_one_model_are_independent(sample):
    (x, y), = batches(sample, 1, 32)
    m = hc.models.mlp(seed=0)
    a = hc.SGD(m, lr=0.1, momentum=0.9)
    m.train_step(x, y, a)
    before = a.state()
    assert any(np.abs(v).sum() > 0 for v in before.values())
    b = hc.SGD(m, lr=0.1, momentum=0.9)  # a second optimizer starts from zero ...
    assert all(np.abs(v).sum() == 0 for v in b.state().values())
    for key, value in a.state().items():  # ... and leaves the first one's state alone
        np.testing.assert_array_equal(value, before[key])


def test_bad_data_parallel_specs_are_rejected():
    with pytest.raises(hc.InvalidValueError, match="twice"):
        hc.DataParallel(["cpu", "cpu"])
    with pytest.raises(hc.InvalidValueError, match="positive"):
        hc.DataParallel({"cpu": -1})
    with pytest.raises(hc.InvalidValueError, match="shares for"):
        hc.DataParallel(["cpu"], shares=[1, 2])
    with pytest.raises(hc.InvalidValueError, match="threads must be"):
        hc.DataParallel(["cpu"], threads=[-1])
    with pytest.raises(hc.DTypeError):
        hc.DataParallel("cpu")
    assert hc.DataParallel({"cpu": 3}).shares == (1.0,)


@pytest.mark.skipif(not hc.cuda_available(), reason="needs a CUDA GPU")
def test_gpu_and_cpu_replicas_match_the_gpu_alone(sample):
    # lr 0.02: at 0.05 and batch 256 these 20 steps amplify rounding about 10^4-fold (one
    # CPU model on 1 and on 16 threads ends 7e-3 apart there, 4e-7 apart at 0.02), so no
    # comparison of two summation orders could pass.
    data = batches(sample, 20, 256)
    one, _, _ = train(hc.models.lenet5(seed=3).to("cuda"), data, lr=0.02)
    both = hc.models.lenet5(seed=3).to(hc.DataParallel({"cuda": 0.8, "cpu": 0.2}))
    two, _, _ = train(both, data, lr=0.02)
    for key in one:
        assert rel_err(two[key], one[key]) < 1e-5, key
    # fit with the training set on the GPU for the GPU's share
    train_set, _ = sample
    h = hc.fit(both, hc.SGD(both, lr=0.02, momentum=0.9),
               (train_set.images[:3000], train_set.labels[:3000]), 1, 256, progress=False)
    assert np.isfinite(h["loss"][0])


def test_replicas_gradient_pass_and_update_apart_are_the_whole_step(sample):
    """compute_grads then apply_update on a data-parallel model (how an MPI rank with
    replicas trains: its gradients are summed further in between) is train_step, bit for bit;
    a weight scales the gradients; accumulation is refused."""
    data = batches(sample, 4, 37)
    dp = lambda: hc.models.lenet5(seed=2).to(hc.DataParallel(  # noqa: E731
        ["cpu", "cpu"], shares=[2, 1], threads=[1, 2]))
    whole, losses, _ = train(dp(), data, lr=0.02)
    apart = dp()
    opt = hc.SGD(apart, lr=0.02, momentum=0.9)
    for (x, y), loss in zip(data, losses):
        assert apart.compute_grads(x, y) == loss
        apart.apply_update(opt)
    for key, value in apart.state_dict().items():
        np.testing.assert_array_equal(value, whole[key], err_msg=key)
    x, y = data[0]
    apart.compute_grads(x, y)
    (_, g1), = apart.gradient_spans()
    apart.compute_grads(x, y, weight=0.25)
    (_, g4), = apart.gradient_spans()
    np.testing.assert_allclose(g4, 0.25 * g1, rtol=1e-6, atol=1e-12)
    with pytest.raises(hc.InvalidValueError, match="accumulate"):
        apart.compute_grads(x, y, accumulate=True)


def small_bn_net(seed):
    """Conv, BatchNorm (running statistics), ReLU, Dropout (a step counter) and Linear: a
    net whose replicas share layer buffers after each step."""
    return hc.Sequential(hc.Conv2d(1, 4, 3), hc.BatchNorm2d(4), hc.ReLU(), hc.MaxPool2d(2),
                         hc.Dropout(0.25), hc.Flatten(), hc.Linear(4 * 13 * 13, 10), seed=seed)


@pytest.mark.skipif(not hc.cuda_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("device_data", [False, True])
@pytest.mark.parametrize("make", [lambda s: hc.models.lenet5(seed=s), small_bn_net])
@pytest.mark.parametrize("shares", [[0.1, 0.6, 0.3], [0.98, 0.01, 0.01]])
def test_overlapped_gpu_and_cpu_steps_are_the_synchronous_steps(sample, make, device_data,
                                                                shares):
    """A GPU master with CPU replicas overlaps its steps as fit runs them (stepper.start
    returns before the sum, the update and the weights' way back are done). The result is the
    synchronous step's (compute_grads then apply_update) bit for bit: weights, losses, layer
    buffers, with unequal shares, two CPU replicas, odd batches, a batch where the GPU has no
    rows (shares 0.1/0.6/0.3 at 3 and 1 rows: its buffers then come from a CPU replica), and
    batches where the CPU replicas have none (0.98/0.01/0.01 at 3 and 1 rows: the weights
    they skipped land when they next have rows)."""
    train_set, _ = sample
    X, y = train_set.images[:600], train_set.labels[:600].astype(np.int64)
    sizes = [97, 64, 3, 128, 1, 50]
    order = np.random.default_rng(7).permutation(len(X))
    starts = np.cumsum([0] + sizes)
    placement = hc.DataParallel(["cuda", "cpu", "cpu"], shares=shares, threads=[0, 1, 2])
    counts = [placement.sub_batches(n) for n in sizes]
    assert any(c[0] == 0 for c in counts) or any(c[1] + c[2] == 0 for c in counts)

    overlapped = make(4).to(placement)
    opt = hc.SGD(overlapped, lr=0.05, momentum=0.9)
    stepper = overlapped.stepper((X, y), device_data=device_data)
    host = lambda rows: X[rows] * F32(1 / 255)  # noqa: E731  (as fit and the GPU's gather scale)
    losses = []
    for b in range(len(sizes)):
        losses += stepper.start(order[starts[b]:starts[b + 1]], host, opt)
    losses += stepper.finish()

    synchronous = make(4).to(placement)
    opt2 = hc.SGD(synchronous, lr=0.05, momentum=0.9)
    expected = []
    for b in range(len(sizes)):
        rows = order[starts[b]:starts[b + 1]]
        expected.append(synchronous.compute_grads(host(rows), y[rows], with_correct=True))
        synchronous.apply_update(opt2)
    assert [loss for loss, _ in losses] == [loss for loss, _ in expected]
    assert [int(c) for _, c in losses] == [int(c) for _, c in expected]
    got, want = overlapped.state_dict(), synchronous.state_dict()
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    # every replica holds the master's weights and buffers once the steps are finished: a
    # further step, whose rows the CPU replicas compute from their own copies, still agrees
    rows = order[:200]
    assert overlapped.compute_grads(host(rows), y[rows]) == \
        synchronous.compute_grads(host(rows), y[rows])
    overlapped.apply_update(opt)
    synchronous.apply_update(opt2)
    for key, value in synchronous.state_dict().items():
        np.testing.assert_array_equal(overlapped.state_dict()[key], value, err_msg=key)
