# Where a CPU+GPU data-parallel step spends its time (throwaway probe).
import time, sys
import numpy as np
import heterocnn as hc
sys.path.insert(0, "apps")
from _bench_hetero import training_rate

rng = np.random.default_rng(1)
X = rng.integers(0, 256, (16384, 1, 28, 28), dtype=np.uint8)
y = rng.integers(0, 10, len(X)).astype(np.int64)

def timed_rate(model, batch, steps=150):
    opt = hc.SGD(model, lr=1e-4, momentum=0.9)
    st = model.stepper((X, y), "auto", batch_size=batch)
    buf = np.empty((batch,) + X.shape[1:], np.float32)
    hb = [0.0]
    def host(rows):
        t = time.perf_counter()
        out = buf[: len(rows)]
        np.multiply(X[rows], np.float32(1 / 255), out=out, casting="unsafe")
        hb[0] += time.perf_counter() - t
        return out
    core = [0.0]
    orig = model._replica_start if model._replicas is not None else None
    if orig:
        def wrapped(*a, **k):
            t = time.perf_counter(); r = orig(*a, **k); core[0] += time.perf_counter() - t; return r
        model._replica_start = wrapped
    order = np.random.default_rng(0).permutation(len(X))
    nb = len(X) // batch
    secs = np.zeros(2)
    for b in range(10):
        st.start(order[(b % nb) * batch:(b % nb + 1) * batch], host, opt)
    st.finish()
    hb[0] = core[0] = 0.0
    t0 = time.perf_counter()
    for b in range(steps):
        st.start(order[(b % nb) * batch:(b % nb + 1) * batch], host, opt)
        if orig: secs += np.array(model._replica_seconds())
    st.finish()
    T = (time.perf_counter() - t0) / steps
    return T, hb[0] / steps, core[0] / steps, secs / steps

for name in ("lenet5", "mlp"):
    for batch in (1024, 256):
        T, _, _, _ = timed_rate(hc.models.MODELS[name](seed=0).to("cuda"), batch)
        print(f"{name} b{batch} gpu alone {T*1e3:.3f} ms/step")
        Tc, _, _, _ = timed_rate(hc.models.MODELS[name](seed=0).to("cpu"), batch, 30)
        print(f"{name} b{batch} cpu alone {Tc*1e3:.3f} ms/step  ceiling {1+T/Tc:.3f}")
        for share in (0.97, 0.95, 0.93, 0.91, 0.89):
            m = hc.models.MODELS[name](seed=0).to(hc.DataParallel({"cuda:0": share, "cpu": 1 - share}))
            Td, hbt, ct, secs = timed_rate(m, batch)
            print(f"  dp gpu {share}: {Td*1e3:.3f} ms/step ({T/Td:.2f}x gpu) host_batch {hbt*1e3:.3f} core {ct*1e3:.3f} "
                  f"python-other {(Td-hbt-ct)*1e3:.3f}  gpu graph {secs[0]*1e3:.3f} cpu grads {secs[1]*1e3:.3f}")
        m = hc.models.MODELS[name](seed=0).to(hc.DataParallel(["cuda:0", "cpu"]))
        t0 = time.perf_counter(); Td, hbt, ct, secs = timed_rate(m, batch, 400)
        print(f"  dp measured+rebalanced {m.placement}: {Td*1e3:.3f} ms/step ({T/Td:.2f}x gpu), {time.perf_counter()-t0:.1f} s")
        m = hc.models.MODELS[name](seed=0).to(hc.DataParallel({"cuda:0": 1.0, "cpu": 1e-9}))
        Td, hbt, ct, secs = timed_rate(m, batch)
        print(f"  dp cpu=0 rows: {Td*1e3:.3f} ms/step core {ct*1e3:.3f} gpu graph {secs[0]*1e3:.3f}")
