#!/usr/bin/env python3
"""Longer fuzzing of the checkpoint loader (hc.load) than the test suite's: the same
generated and mutated safetensors files (header length, JSON, dtypes, shapes, offsets,
metadata, truncation, byte flips), many more of them. Every file must load or raise
hc.DataFormatError naming it, without a large allocation.

    python3 tools/fuzz_checkpoint.py --examples 100000      (about 4 ms a file)
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

import test_checkpoint as tc  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=20000, help="files to try (default 20000)")
    args = p.parse_args()
    blob = tc.checkpoint_bytes()
    outcomes = {"loaded": 0, "rejected": 0}

    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(tc.mutated(blob))
    def run(data):
        outcomes[tc.check_one(data)] += 1

    start = time.perf_counter()
    run()
    print(f"{sum(outcomes.values())} files in {time.perf_counter() - start:.0f} s: {outcomes}; "
          "no other exception, no crash")


if __name__ == "__main__":
    main()
