# GFLOP/s of numpy's matmul (its BLAS) for shapes "TT,M,N,K" given on the command line: best of
# repeated calls over at least min_s seconds. Threads: OPENBLAS_NUM_THREADS from the environment.
import sys, time
import numpy as np
min_s = float(sys.argv[1])
rng = np.random.default_rng(1)
for s in sys.argv[2:]:
    t, M, N, K = s.split(","); M, N, K = int(M), int(N), int(K)
    A = rng.uniform(-1, 1, (K, M) if t[0] == "T" else (M, K)).astype(np.float32)
    B = rng.uniform(-1, 1, (N, K) if t[1] == "T" else (K, N)).astype(np.float32)
    a = A.T if t[0] == "T" else A
    b = B.T if t[1] == "T" else B
    C = np.empty((M, N), np.float32)
    np.matmul(a, b, out=C)
    best, total, reps = 1e30, 0.0, 1
    while total < min_s:
        t0 = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=C)
        dt = time.perf_counter() - t0
        best = min(best, dt / reps); total += dt
        if dt < 0.01: reps *= 2
    print(f"numpy {s:>20} {2.0 * M * N * K / best / 1e9:8.1f}")
