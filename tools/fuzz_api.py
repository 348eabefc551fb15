#!/usr/bin/env python3
"""Longer property run of the public API than the test suite's (tests/test_property.py): the
same random architectures, absurd hyper-parameters and inputs and sequences of calls, many
more of them, in the same capped child process. Every call must work or raise an
hc.HeteroCNNError, with no crash, hang or silent non-finite result; the first case that does
not is printed (shrunk by hypothesis) and the exit status is 1.

    nice -n 10 python3 tools/fuzz_api.py --examples 100000      (about 10 ms a case)
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import test_property as tp  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=20000, help="cases to run (default 20000)")
    p.add_argument("--chunk", type=int, default=5000,
                   help="cases per hypothesis run (progress is printed after each)")
    args = p.parse_args()
    totals = dict.fromkeys(("cases", "built", "ok_calls", "rejected_calls"), 0)
    totals["ops"] = {}
    worker = tp.Worker()
    start = time.perf_counter()
    try:
        while totals["cases"] < args.examples:
            tp.check_cases(min(args.chunk, args.examples - totals["cases"]), totals, worker)
            rate = totals["cases"] / (time.perf_counter() - start)
            print(f"{totals['cases']} cases, {rate:.0f} a second", flush=True)
    except AssertionError as e:
        print(f"FAILED after {totals['cases']} cases:\n{e}")
        return 1
    finally:
        worker.close()
    elapsed = time.perf_counter() - start
    print(f"{totals['cases']} cases in {elapsed:.0f} s ({totals['cases'] / elapsed:.0f} a "
          f"second): {totals['built']} models built, {totals['ok_calls']} calls worked, "
          f"{totals['rejected_calls']} raised HeteroCNNError; no other exception, no crash, no "
          "hang, no silent non-finite result")
    print(json.dumps(dict(sorted(totals["ops"].items())), indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
