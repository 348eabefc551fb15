"""CPU_PERF.md entry 24's count: where hc.fit spends a step outside the core, cProfile of two
epochs of mlp at batch 256 on 16,384 random uint8 images; with --old, the batch gather as it
was before the entry (numpy's indexing, fit_ab.py's `old`).
    OMP_NUM_THREADS=2 python benchmarks/earlier/cpu-perf-24/fit_profile.py [--old]"""
import cProfile
import pstats
import sys

import numpy as np

import heterocnn as hc
from heterocnn import training

if "--old" in sys.argv:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from fit_ab import old  # noqa: E402

    training._batch = old

rng = np.random.default_rng(0)
X, y = rng.integers(0, 256, (16384, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, 16384)
model = hc.models.MODELS["mlp"](seed=0)
opt = hc.SGD(model, lr=0.01, momentum=0.9)
hc.fit(model, opt, (X[:2048], y[:2048]), epochs=1, batch_size=256, progress=False)
profile = cProfile.Profile()
profile.enable()
hc.fit(model, opt, (X, y), epochs=2, batch_size=256, progress=False)
profile.disable()
pstats.Stats(profile).sort_stats("tottime").print_stats(8)
