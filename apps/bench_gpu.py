#!/usr/bin/env python3
"""The GPU issue's benchmark, as one command: `apps/bench.py --suite gpu`, i.e. training images/s
of mlp, lenet5 and convnet at batch 64 and 256, heterocnn against PyTorch eager and
torch.compile(mode="reduce-overhead") with the training set held on the device, and the CUDA
GEMM lab against cuBLAS, in one run (a table, and JSON under benchmarks/). Any other option of
apps/bench.py passes through, e.g.
    python apps/bench_gpu.py --data /usr/share/fashion-mnist --repeats 3"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

if __name__ == "__main__":
    sys.exit(bench.main(["--suite", "gpu"] + sys.argv[1:]))
