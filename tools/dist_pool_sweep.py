"""How far MPI data-parallel training with unequal shares lands from one process, with max and
with average pooling, over batch sizes: the evidence behind test_distributed's unequal-shares
test running lenet5 with average pooling. Needs mpirun (pip install '.[mpi]').

    python tools/dist_pool_sweep.py [BATCH ...]      (default 29 31 37 ... 101)

Prints, per pooling and batch size, the largest ||w_ranks - w_one|| / ||w_one|| over the weights
and momenta (tests/conftest.rel_err) for 3 ranks with shares 20,1,1 and 2 ranks with 3,1."""
import os
import pathlib
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests"))
import test_distributed as td  # noqa: E402
from conftest import rel_err  # noqa: E402

batches = sys.argv[1:] or ["29", "31", "37", "41", "43", "47", "53", "59", "61", "67", "71",
                           "73", "79", "83", "89", "97", "101"]
tmp = pathlib.Path(tempfile.mkdtemp())
for pool, flag in (("max", []), ("avg", ["--avgpool"])):
    row = []
    for b in batches:
        one = td.run(tmp, 0, "--batch", b, *flag, name=f"{pool}-one-{b}.npz")
        errs = []
        for ranks, shares in ((3, "20,1,1"), (2, "3,1")):
            r = td.run(tmp, ranks, "--batch", b, "--shares", shares, *flag,
                       name=f"{pool}-{ranks}-{b}.npz")
            errs.append(max(rel_err(r[k], one[k]) for k in one))
        row.append(f"{b}:{errs[0]:.0e}/{errs[1]:.0e}")
    print(pool, " ".join(row), flush=True)
