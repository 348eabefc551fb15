"""A worker of the mpi suite (apps/_bench_mpi.py), run under mpirun: PyTorch's
DistributedDataParallel with the gloo backend on the CPU, the peer of
apps/_bench_mpi_heterocnn.py on the same ranks, threads and cores.

    mpirun -n P python apps/_bench_mpi_ddp.py --out R.json --net convnet --batch 1024 \\
        --threads 4 --seconds 1 --repeats 5 --warmup 3

The net is heterocnn's, as torch.nn (heterocnn.interop.to_torch, the same weights on every
rank), SGD with momentum 0.9; the global batch is split evenly over the ranks, each rank
cycling through its own random float32 batches in [0, 1) with int64 labels. The process group
meets at a TCP store rank 0 opens on 127.0.0.1 on a port the kernel picks, told to the other
ranks over MPI (no port chosen beforehand that another process could take meanwhile); rank and
size come from MPI (mpi4py), which also keeps the barriers and the step count of the timed
loop, as for heterocnn. Communication time is not
measured: DDP overlaps its bucketed allreduce with the backward pass."""

import sys

import _bench_mpi_rank as rank_env  # the script's folder is on sys.path; before torch
from _bench_mpi_rank import BATCHES_HELD, LR, MOMENTUM


def rendezvous(comm, rank, size):
    """The process group's store: rank 0's, on a port the kernel gives it, which the others
    learn over MPI."""
    from datetime import timedelta

    import torch.distributed as dist

    host, timeout = "127.0.0.1", timedelta(seconds=120)
    if rank == 0:
        store = dist.TCPStore(host, 0, size, True, timeout=timeout, wait_for_workers=False)
        comm.bcast(store.port, root=0)
        return store
    return dist.TCPStore(host, comm.bcast(None, root=0), size, False, timeout=timeout)


def main():
    args = rank_env.parse_args(__doc__.splitlines()[0])
    comm, rank, size = rank_env.join(args)
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import heterocnn as hc
    from heterocnn.interop import to_torch, torch_loss

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", store=rendezvous(comm, rank, size), rank=rank,
                            world_size=size)
    template = hc.models.MODELS[args.net](seed=0)
    model = DistributedDataParallel(to_torch(template))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch_loss(template)
    rows = args.batch // size + (rank < args.batch % size)
    gen = torch.Generator().manual_seed(rank)
    data = [(torch.rand((rows, 1, 28, 28), generator=gen),
             torch.randint(0, 10, (rows,), generator=gen, dtype=torch.int64))
            for _ in range(BATCHES_HELD)]

    def step(i):
        x, y = data[i % BATCHES_HELD]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for i in range(args.warmup):
        step(i)
    steps = rank_env.agreed_steps(comm, step, args.warmup, args.seconds)
    seconds, _ = rank_env.timed_repeats(comm, step, args.warmup + rank_env.CALIBRATION_STEPS,
                                        steps, args.repeats)
    rank_env.report(comm, args, "cpu", {
        "framework": "torch_ddp_gloo", "steps": steps, "warmup_steps": args.warmup,
        "seconds": seconds, "images_per_s": [steps * args.batch / s for s in seconds],
        "comm_seconds": None, "comm": "not measured: DDP overlaps its bucketed allreduce "
                                      "with the backward pass",
        "rows_per_rank": rows, "torch": torch.__version__, "lr": LR, "momentum": MOMENTUM})
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
