"""Training and evaluation mode (model.train() / model.eval()), as torch.nn.Module's: which
mode each entry point runs in and which it leaves the model in."""

import numpy as np
import pytest

import heterocnn as hc


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def test_train_and_eval_set_the_mode_of_the_model_and_its_core():
    m = hc.models.lenet5()
    assert m.training and m._net.training()
    assert m.eval() is m
    assert not m.training and not m._net.training()
    assert m.train() is m and m.training and m._net.training()
    m.train(False)
    assert not m.training


@pytest.mark.parametrize("bad", ["eval", 1, None])
def test_train_refuses_anything_but_a_bool(bad):
    m = hc.models.mlp()
    with pytest.raises(hc.InvalidValueError, match="True or False"):
        m.train(bad)
    assert m.training


@pytest.mark.parametrize("start", [True, False])
def test_predict_and_evaluate_run_in_eval_mode_and_restore_the_mode(start, monkeypatch):
    m = hc.models.lenet5().train(start)
    x, y = data()
    seen = []
    forward = type(m).__call__

    def spy(self, batch):
        seen.append(self.training)
        return forward(self, batch)

    monkeypatch.setattr(type(m), "__call__", spy)
    hc.predict(m, x, device=None)
    hc.evaluate(m, (x, y), device=None)
    assert seen and not any(seen)
    assert m.training is start


def test_evaluating_restores_the_mode_after_an_error():
    m = hc.models.mlp()
    with pytest.raises(RuntimeError):
        with m.evaluating():
            assert not m.training
            raise RuntimeError("boom")
    assert m.training


def test_fit_trains_in_training_mode_and_leaves_it_so():
    m = hc.models.mlp().eval()
    x, y = data()
    modes = []
    hc.fit(m, hc.SGD(m, lr=0.01), (x, y), epochs=2, batch_size=16, val=(x, y), progress=False,
           on_epoch_end=lambda epoch, history: modes.append(m.training))
    assert modes == [True, True] and m.training


def test_replicas_and_placed_copies_follow_the_mode():
    m = hc.models.mlp()
    m.to(hc.DataParallel(["cpu", "cpu"], shares=[0.5, 0.5], threads=[1, 2]))
    m.eval()
    assert all(not net.training() for net in m._replica_nets)
    m.train()
    assert all(net.training() for net in m._replica_nets)
    plain = hc.models.mlp().eval()
    assert not plain.placed_copy(("cpu",) * len(plain.layers))._net.training()
