"""Property test of the public API: random small architectures (valid by construction, or
mutated into invalid ones), random and absurd hyper-parameters and inputs (NaN, inf, huge,
negative, wrong dtypes and shapes), and a random sequence of public calls on them: construct,
__call__, loss_and_grads, train_step (with and without check_finite), state_dict round trips,
estimate_memory, predict, evaluate, fit, output_shape, set_threads, save/load.

Every call must work or raise an hc.HeteroCNNError; never another exception, never a crash,
never a silent non-finite result (finite, moderate inputs and weights give finite outputs; a
checked step or guarded fit either is finite or raises NonFiniteError with the model restored).

The cases run in a child process with capped memory (RLIMIT_AS) and a time limit per case,
so a segfault, an abort or a hang fails the test with the case (which hypothesis then
shrinks) instead of killing pytest. tools/fuzz_api.py runs the same cases for longer.
"""

import json
import os
import select
import subprocess
import sys
import tempfile
import traceback

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# In the suite (fewer under the sanitizers, which run them several times slower; enough that
# every operation works at least once);
# tools/fuzz_api.py --examples N for more.
EXAMPLES = 700 if "libasan" in os.environ.get("LD_PRELOAD", "") else 2000
CASE_TIMEOUT_S = 30
CHILD_MEMORY_BYTES = 4 * 2**30

# -- the cases (JSON-able dicts) ----------------------------------------------------------------

ABSURD_INTS = [0, -1, -2**63, 2**31, 2**40, 2**40 + 1, 2**62, 2**63, 2**64, 10**30]
ABSURD_OTHER = [1.5, True, "3", None, float("nan"), [2]]
ABSURD_FLOATS = [0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e30, 1e-50, 1e39,
                 "0.1", True, None, 2**70]


def sometimes(valid, absurd, p_absurd=1):
    """``valid`` mostly; one of ``absurd`` in about p_absurd of 10 draws."""
    return st.integers(0, 9).flatmap(lambda r: st.sampled_from(absurd) if r < p_absurd
                                     else valid)


@st.composite
def chain(draw):
    """(layers, sample shape, classes, loss): a chain that fits its input."""
    loss = draw(st.sampled_from(["cross_entropy", "cross_entropy", "bce"]))
    classes = 1 if loss == "bce" else draw(st.integers(1, 5))
    layers = []
    if draw(st.integers(0, 3)) == 0:  # a flat input (N, features)
        shape = (draw(st.integers(1, 16)),)
    else:
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    sample = shape
    for _ in range(draw(st.integers(0, 4))):
        if len(shape) == 3:
            c, h, w = shape
            kind = draw(st.sampled_from(["Conv2d", "Conv2d", "MaxPool2d", "ReLU", "Sigmoid",
                                         "AvgPool2d", "AdaptiveAvgPool2d", "Tanh", "LeakyReLU",
                                         "GELU"]))
            if kind == "Conv2d":
                p = draw(st.integers(0, 2))
                k = draw(st.integers(1, min(5, h + 2 * p, w + 2 * p)))
                s = draw(st.integers(1, 3))
                m = draw(st.integers(1, 4))
                layers.append(["Conv2d", c, m, k, s, p] + draw(st.sampled_from([[], [0], [1]])))
                shape = (m, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
            elif kind == "AvgPool2d":
                k = draw(st.integers(1, min(3, h, w)))
                s = draw(st.integers(1, 3))
                p = draw(st.integers(0, k // 2))
                layers.append(["AvgPool2d", k, s, p])
                shape = (c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
            elif kind == "AdaptiveAvgPool2d":
                o = draw(st.integers(1, 4))
                layers.append(["AdaptiveAvgPool2d", o])
                shape = (c, o, o)
            elif kind == "LeakyReLU":
                layers.append(["LeakyReLU", draw(st.sampled_from([0.01, 0.2, -0.5, 0]))])
            elif kind == "MaxPool2d":
                k = draw(st.integers(1, min(3, h, w)))
                s = draw(st.integers(1, 3))
                layers.append(["MaxPool2d", k, s])
                shape = (c, (h - k) // s + 1, (w - k) // s + 1)
            elif kind == "GELU":
                layers.append(["GELU"] + draw(st.sampled_from([[], ["tanh"]])))
            else:
                layers.append([kind])
        else:
            kind = draw(st.sampled_from(["Linear", "ReLU", "Sigmoid", "Tanh", "GELU"]))
            if kind == "Linear":
                o = draw(st.integers(1, 12))
                layers.append(["Linear", shape[0], o] + draw(st.sampled_from([[], [0]])))
                shape = (o,)
            else:
                layers.append([kind])
    if len(shape) == 3:
        layers.append(["Flatten"])
        shape = (shape[0] * shape[1] * shape[2],)
    layers.append(["Linear", shape[0], classes])
    if draw(st.integers(0, 4)) == 0:  # an activation after the logits is valid too
        layers.append([draw(st.sampled_from(["ReLU", "Sigmoid"]))])
    return layers, list(sample), classes, loss


@st.composite
def mutated_chain(draw):
    """A valid chain, in about a third of the cases made invalid: an argument replaced by an
    absurd one, a layer dropped or duplicated, or a random kind inserted."""
    layers, sample, classes, loss = draw(chain())
    how = draw(st.integers(0, 8))
    if how == 0:  # an absurd argument
        with_args = [i for i, spec in enumerate(layers) if len(spec) > 1]
        i = draw(st.sampled_from(with_args))
        j = draw(st.integers(1, len(layers[i]) - 1))
        layers[i] = list(layers[i])
        layers[i][j] = draw(st.sampled_from(ABSURD_INTS + ABSURD_OTHER))
    elif how == 1 and len(layers) > 1:  # a layer dropped
        del layers[draw(st.integers(0, len(layers) - 1))]
    elif how == 2:  # a layer duplicated
        i = draw(st.integers(0, len(layers) - 1))
        layers.insert(i, list(layers[i]))
    elif how == 3:  # a random layer anywhere
        kind = draw(st.sampled_from(["Linear", "Conv2d", "MaxPool2d", "Flatten", "ReLU",
                                     "Sigmoid", "Dropout", "AvgPool2d", "AdaptiveAvgPool2d",
                                     "Tanh", "LeakyReLU", "GELU"]))
        n = {"Linear": 2, "Conv2d": 5, "MaxPool2d": 2, "AvgPool2d": 3, "AdaptiveAvgPool2d": 1,
             "LeakyReLU": 1}.get(kind, 0)
        args = draw(st.lists(sometimes(st.integers(1, 6), ABSURD_INTS + ABSURD_OTHER, 2),
                             min_size=n, max_size=n))
        layers.insert(draw(st.integers(0, len(layers))), [kind] + args)
    return layers, sample, classes, loss


OPS = ["call", "loss_and_grads", "train_step", "train_step_checked", "state_dict", "estimate",
       "predict", "evaluate", "fit", "output_shape", "set_threads", "save_load"]


# Per field of a case: absurd values, one of which replaces the valid one when the field is
# picked as a fault.
FAULTS = {
    "loss": ["mse", None, 3, "BCE"],
    "seed": [-1, 2**64, 1.5, "1", True, None],
    "n": [0],
    "sample": [[], [0], [1, 2, 3, 4], [3, 0, 5], [1, 1, 1]],
    "dtype": ["float64", "int32", "bool", "object", "list"],
    "fill": ["nan", "inf", "huge", "tiny"],
    "labels": ["high", "negative", "float", "short", "2d"],
    "lr": ABSURD_FLOATS, "momentum": ABSURD_FLOATS, "weight_decay": ABSURD_FLOATS,
    "batch_size": [0, -1, 2.5, True, 2**63, None, "2"],
    "epochs": [0, -1, 1.5, True, "2", None],
    "on_nan": ["ignore", None, 1],
    "threads": [0, -1, 10**11, 2**31, "2", 1.5, None],
    "estimate": [[b, s] for b in (0, -1, 2**62, 2**63, 1.5, True, None)
                 for s in ([1, 2], )] + [[4, s] for s in ([], [2**40, 2**40], [0, 1, 1], "abc",
                                                          [2**62], [1, 2**31, 2**31], [1.5])],
    "shape": [[], [1], [0, 3], [-1, 3], [2**63, 1], [1, 2**40, 2**40], [1, 1.5], [True, 2],
              [1, 2, 3, 4, 5]],
}


@st.composite
def cases(draw):
    """A case: a valid setting for every field, then none, one or a few fields (the faults)
    replaced by absurd values, so that each fault is met on its own as well as together."""
    layers, sample, classes, loss = draw(mutated_chain())
    n = draw(st.integers(1, 5))
    case = {
        "layers": layers, "loss": loss, "seed": draw(st.integers(0, 2**64 - 1)), "n": n,
        "sample": sample, "dtype": draw(st.sampled_from(["float32"] * 4 + ["uint8"])),
        "fill": draw(st.sampled_from(["normal"] * 3 + ["uniform", "zeros", "negative"])),
        "labels": "valid", "classes": classes, "lr": draw(st.floats(1e-4, 1.0)),
        "momentum": draw(st.sampled_from([0.0, 0.5, 0.9])),
        "weight_decay": draw(st.sampled_from([0.0, 1e-4])),
        "batch_size": draw(st.integers(1, n)), "epochs": draw(st.integers(1, 2)),
        "on_nan": draw(st.sampled_from(["raise", "skip"])), "threads": draw(st.integers(1, 2)),
        "estimate": [draw(st.integers(1, 2**12)), sample], "shape": [n] + list(sample),
        "ops": draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=6)),
        "data_seed": draw(st.integers(0, 2**32 - 1)),
    }
    faults = draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))
    for field in draw(st.lists(st.sampled_from(sorted(FAULTS)), min_size=faults,
                               max_size=faults, unique=True)):
        case[field] = draw(st.sampled_from(FAULTS[field]))
    return case


# -- running one case (in the child) ----------------------------------------------------------

class Rejected(Exception):
    """A call raised a HeteroCNNError: the rest of the case that needs its result is skipped."""


def _inputs(case, rng):
    shape = [case["n"]] + list(case["sample"])
    fill = case["fill"]
    x = {"normal": lambda: rng.standard_normal(shape),
         "uniform": lambda: rng.uniform(0, 1, shape), "zeros": lambda: np.zeros(shape),
         "nan": lambda: np.where(rng.uniform(size=shape) < 0.5, np.nan, 1.0),
         "inf": lambda: np.full(shape, np.inf), "huge": lambda: rng.standard_normal(shape) * 1e30,
         "tiny": lambda: rng.standard_normal(shape) * 1e-40,
         "negative": lambda: -rng.uniform(0, 5, shape)}[fill]()
    dtype = case["dtype"]
    if dtype == "list":
        return x.tolist()
    if dtype == "uint8":
        return np.nan_to_num(np.abs(x) * 50, posinf=255).clip(0, 255).astype(np.uint8)
    with np.errstate(all="ignore"):
        return x.astype(dtype)


def _labels(case, rng):
    n, classes, how = case["n"], max(case["classes"], 1), case["labels"]
    top = 2 if case["loss"] == "bce" else classes
    y = rng.integers(0, top, n)
    return {"valid": y, "high": y + top, "negative": y - top, "float": y + 0.5,
            "short": y[:-1], "2d": y.reshape(-1, 1)}[how]


def _moderate(model, x):
    """Finite input and weights of moderate size: every output must then be finite."""
    return (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.uint8)
            and np.isfinite(x.astype(np.float64)).all() and np.abs(x.astype(np.float64)).max(
                initial=0) <= (255 if x.dtype == np.uint8 else 100)
            and all(np.isfinite(v).all() and np.abs(v).max(initial=0) <= 10
                    for v in model.state_dict().values())
            and all(abs(getattr(layer, "negative_slope", 0)) <= 10 for layer in model.layers))


def _finite_weights(model):
    return all(np.isfinite(v).all() for v in model.state_dict().values())


def run_case(case, workdir):
    """Runs the case's calls; returns {"ok": calls that worked, "rejected": calls that raised
    HeteroCNNError, "ran": whether the model was built}. Any other exception and any failed
    property propagates."""
    import heterocnn as hc

    stats = {"ok": 0, "rejected": 0, "ran": False, "ops": {}}

    def call(fn, *args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except hc.HeteroCNNError:
            stats["rejected"] += 1
            raise Rejected from None
        stats["ok"] += 1
        return out

    rng = np.random.default_rng(case["data_seed"])
    try:
        layers = [call(getattr(hc, spec[0], _Unknown(spec[0])), *spec[1:])
                  for spec in case["layers"]]
        model = call(hc.Sequential, *layers, loss=case["loss"], seed=case["seed"])
    except Rejected:
        return stats
    stats["ran"] = True
    x, y = _inputs(case, rng), _labels(case, rng)
    threads = hc.build_info()["threads"]
    try:
        opt = call(hc.SGD, model, lr=case["lr"], momentum=case["momentum"],
                   weight_decay=case["weight_decay"])
    except Rejected:
        opt = hc.SGD(model, lr=0.01)
    try:
        for op in case["ops"]:
            try:
                _op(op, case, model, opt, x, y, workdir, call, hc)
                outcome = f"{op} ok"
            except Rejected:
                outcome = f"{op} rejected"
            stats["ops"][outcome] = stats["ops"].get(outcome, 0) + 1
    finally:
        hc.set_threads(threads)
    return stats


class _Unknown:
    """A layer name heterocnn does not have: what a user gets is an AttributeError of the
    module, which is not ours to test; stand in with a non-layer object instead."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        return object()


def _op(op, case, model, opt, x, y, workdir, call, hc):
    moderate = _moderate(model, x)
    if op == "call":
        out = call(model, x)
        assert out.shape[0] == len(x)
        assert not moderate or np.isfinite(out).all(), "non-finite logits"
    elif op == "loss_and_grads":
        loss, grads = call(model.loss_and_grads, x, y)
        assert list(grads) == list(model.state_dict())
        if moderate:
            assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    elif op == "train_step":
        call(model.train_step, x, y, opt)  # unchecked: NaN may come back, by design
    elif op == "train_step_checked":
        before = model.state_dict()
        try:
            loss = call(model.train_step, x, y, opt, check_finite=True)
        except Rejected:
            after = model.state_dict()
            assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before), \
                "a rejected checked step changed the model"
            raise
        assert np.isfinite(loss) and _finite_weights(model)
    elif op == "state_dict":
        state = model.state_dict()
        call(model.load_state_dict, state)
        again = model.state_dict()
        assert all(np.array_equal(state[k], again[k], equal_nan=True) for k in state)
    elif op == "estimate":
        est = call(hc.estimate_memory, model, *case["estimate"])
        assert all(type(v) is int and v >= 0 for e in est.values() for v in e.values())
    elif op == "predict":
        out = call(hc.predict, model, x, batch_size=case["batch_size"])
        assert out.shape[0] == len(x)
        assert not moderate or np.isfinite(out).all(), "non-finite predictions"
    elif op == "evaluate":
        acc = call(hc.evaluate, model, (x, y), batch_size=case["batch_size"])
        assert isinstance(acc, float) and 0 <= acc <= 1
    elif op == "fit":
        finite_before = _finite_weights(model)
        try:
            history = call(hc.fit, model, opt, (x, y), case["epochs"], case["batch_size"],
                           progress=False, on_nan=case["on_nan"], seed=case["data_seed"])
        except Rejected:
            assert _finite_weights(model) or not finite_before, "fit left non-finite weights"
            raise
        assert _finite_weights(model), "fit returned with non-finite weights"
        assert all(v is None or np.isfinite(v) for v in history["loss"])
    elif op == "output_shape":
        out = call(model.output_shape, case["shape"])
        assert isinstance(out, tuple) and len(out) == 2
    elif op == "set_threads":
        call(hc.set_threads, case["threads"])
    elif op == "save_load":
        path = os.path.join(workdir, "case.safetensors")
        call(hc.save, model, path, opt)
        loaded, lopt, _ = call(hc.load, path)
        a, b = model.state_dict(), loaded.state_dict()
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert lopt is not None and lopt.lr == opt.lr


def serve():
    """The child: cases as JSON lines on stdin, one result line each on the original stdout
    ({"stats": ...} or {"bad": traceback}); everything else printed goes to stderr."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    with tempfile.TemporaryDirectory() as workdir:
        for line in sys.stdin:
            case = json.loads(line)
            if case.get("_abort"):  # test hook: a crash, as a segfault in the core would be
                os.abort()
            try:
                result = {"stats": run_case(case, workdir)}
            except Exception:  # noqa: BLE001 - anything not a HeteroCNNError is a finding
                result = {"bad": traceback.format_exc(limit=8)}
            out.write(json.dumps(result) + "\n")
            out.flush()


# -- the parent: a capped child that runs the cases ---------------------------------------------

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def _limits():
    import resource

    # AddressSanitizer reserves terabytes of address space for its shadow memory, which an
    # address-space cap forbids: under it (tests/run_all.sh's second pass) ASan's allocator
    # refuses what the cap would (_child_env).
    if not UNDER_ASAN:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child_env():
    env = dict(os.environ)
    if UNDER_ASAN:  # allocations past the cap return null (an out-of-memory error), not a crash
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":allocator_may_return_null=1"
                               f":max_allocation_size_mb={CHILD_MEMORY_BYTES >> 20}").lstrip(":")
    return env


class Worker:
    """A child process running cases; restarted after a crash or a hang."""

    def __init__(self, timeout=CASE_TIMEOUT_S):
        self.proc, self.timeout = None, timeout

    def _start(self):
        here = os.path.dirname(os.path.abspath(__file__))
        self.err = tempfile.TemporaryFile()
        code = (f"import sys; sys.path.insert(0, {here!r}); import test_property; "
                "test_property.serve()")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     preexec_fn=_limits, env=_child_env())

    def _died(self, why):
        self.proc.kill()
        rc = self.proc.wait()
        self.err.seek(0)
        tail = self.err.read()[-3000:].decode(errors="replace")
        self.proc = None
        return {"bad": f"{why} (exit status {rc}); child stderr:\n{tail}"}

    def run(self, case):
        if self.proc is None:
            self._start()
        try:
            self.proc.stdin.write(json.dumps(case) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._died("the child was gone")
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            return self._died(f"the case took more than {self.timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            return self._died("the child crashed")
        return json.loads(line)

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None


def check_cases(examples, totals, worker):
    """Runs ``examples`` hypothesis cases in ``worker``, adding up their outcomes in
    ``totals``; a bad case fails (and is shrunk) with its case and the child's traceback."""

    @settings(max_examples=examples, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def run(case):
        result = worker.run(case)
        assert "bad" not in result, f"{result['bad']}\ncase: {json.dumps(case)}"
        s = result["stats"]
        totals["cases"] += 1
        totals["built"] += s["ran"]
        totals["ok_calls"] += s["ok"]
        totals["rejected_calls"] += s["rejected"]
        for outcome, count in s["ops"].items():
            totals["ops"][outcome] = totals["ops"].get(outcome, 0) + count

    run()


def test_public_api_works_or_raises_heterocnn_errors():
    totals = dict.fromkeys(("cases", "built", "ok_calls", "rejected_calls"), 0)
    totals["ops"] = {}
    worker = Worker()
    try:
        check_cases(EXAMPLES, totals, worker)
    finally:
        worker.close()
    print(totals)
    # Both sides are exercised: most models build and run, and many calls are refused.
    assert totals["built"] > totals["cases"] // 3
    assert totals["ok_calls"] > totals["cases"] and totals["rejected_calls"] > totals["cases"] // 3
    for op in OPS:  # every call succeeds in some cases
        assert totals["ops"].get(f"{op} ok", 0) > 0, (op, totals["ops"])


def test_a_crash_in_the_child_fails_with_the_case():
    worker = Worker(timeout=20)
    try:
        bad = worker.run({"_abort": True})
        assert "the child crashed (exit status -6)" in bad["bad"]
        case = {"layers": [["Linear", 0, 2]], "loss": "cross_entropy", "seed": 0, "data_seed": 1}
        assert worker.run(case)["stats"]["rejected"] == 1  # in a restarted child
    finally:
        worker.close()
