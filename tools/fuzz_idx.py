#!/usr/bin/env python3
"""A long fuzz run of the IDX reader (heterocnn.datasets.load_idx and read_idx_header).

The test suite (tests/test_fuzz_idx.py) runs about 2000 cases on every test run; this runs the
same checks at length, with either engine:

    python tools/fuzz_idx.py --examples 200000           # hypothesis: generated and mutated
                                                         # files of each kind, raw and gzipped
    python tools/fuzz_idx.py --atheris --seconds 600     # atheris (pip install atheris):
                                                         # coverage-guided mutation of raw and
                                                         # gzipped seed files

Each case must give an array the reference parser agrees with, or DataFormatError naming the
file, allocating no more than its data justifies; anything else stops the run with the case.
It prints the cases run and their outcomes (accepted / rejected) per kind.
"""

import argparse
import collections
import importlib.util
import sys
import tempfile
import time
from pathlib import Path


def load_checks():
    """tests/test_fuzz_idx.py as a module: its strategies and check_file."""
    path = Path(__file__).resolve().parent.parent / "tests" / "test_fuzz_idx.py"
    spec = importlib.util.spec_from_file_location("test_fuzz_idx", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_hypothesis(checks, examples, path, seed):
    from hypothesis import given, seed as hypothesis_seed

    outcomes = collections.defaultdict(collections.Counter)
    per_kind = max(1, examples // len(checks.STRATEGIES))
    for kind, strategy in checks.STRATEGIES.items():
        @checks.fuzz_settings(per_kind)
        @given(data=strategy)
        def case(data):
            outcomes[kind][checks.check_file(path, data)] += 1
        if seed is not None:
            case = hypothesis_seed(seed)(case)
        start = time.perf_counter()
        case()
        n = sum(outcomes[kind].values())
        print(f"{kind:>13}: {n} cases in {time.perf_counter() - start:.0f} s: "
              f"{dict(outcomes[kind])}", flush=True)
    return outcomes


def run_atheris(seconds, path, corpus, extra):
    import atheris
    import numpy as np

    with atheris.instrument_imports(include=["heterocnn.datasets", "gzip"]):
        from heterocnn.datasets import save_idx
    checks = load_checks()
    # Seeds: small valid files of every type code, raw and gzipped; libFuzzer mutates from there.
    for i, code in enumerate(checks.CODES.values()):
        array = np.arange(24).reshape(2, 3, 4).astype(np.dtype(code).newbyteorder("="))
        save_idx(corpus / f"seed{i}.idx", array)
        save_idx(corpus / f"seed{i}.idx.gz", array[0])
    counts = collections.Counter()

    def one_input(data):
        counts[checks.check_file(path, data)] += 1
        n = sum(counts.values())
        if n & (n - 1) == 0 or n % 100_000 == 0:  # libFuzzer ends the process itself
            print(f"atheris: {n} cases: {dict(counts)}", flush=True)

    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", *extra, str(corpus)], one_input)
    atheris.Fuzz()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=100_000,
                   help="hypothesis cases in all, split evenly over the kinds (default 100000)")
    p.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    p.add_argument("--atheris", action="store_true", help="coverage-guided fuzzing with atheris")
    p.add_argument("--seconds", type=int, default=300, help="atheris run time (default 300)")
    args, extra = p.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.idx"
        start = time.perf_counter()
        if args.atheris:  # extra arguments go to libFuzzer, e.g. -seed=1
            (Path(tmp) / "corpus").mkdir()
            run_atheris(args.seconds, path, Path(tmp) / "corpus", extra)
        else:
            outcomes = run_hypothesis(load_checks(), args.examples, path, args.seed)
            total = sum(sum(c.values()) for c in outcomes.values())
            print(f"all: {total} cases in {time.perf_counter() - start:.0f} s, no failure")


if __name__ == "__main__":
    main()
