"""CPU_PERF.md entry 22: the team grids sgemm's old rule (tm x tn == threads, the divisor pair
with the least M/tm + N/tn) and its new one (gemm.cpp's choose_grid: at most one non-empty block
a thread in whole tiles, least r*c + NR*(r+c) of the largest block) give the products of the four
nets' Linear layers that run on the team (2 M N K >= 2e6 flops), and where they differ.

    python3 grid_rules.py [avx512|avx2] [threads...]      (default: avx512 2 4 8 16)
"""
import sys

TILES = {"avx512": (14, 32), "avx2": (6, 16)}
LINEAR = {"mlp": [(784, 256), (256, 128), (128, 10)],
          "lenet5": [(400, 120), (120, 84), (84, 10)],
          "convnet": [(3136, 256), (256, 10)], "bnnet": [(128, 10)]}
BATCHES = (37, 64, 256, 1000)


def ceil(a, b):
    return -(-a // b)


def old_rule(threads, M, N):
    best, tm = 1e300, 1
    for t in range(1, threads + 1):
        cost = M / t + N / (threads // t)
        if threads % t == 0 and cost < best:
            best, tm = cost, t
    return tm, threads // tm


def new_rule(threads, M, N, mr, nr):
    mt, nt = ceil(M, mr), ceil(N, nr)
    best, best_cost = (1, 1), 1e300
    for tm in range(1, min(threads, mt) + 1):
        for tn in range(1, min(threads // tm, nt) + 1):
            rows, cols = min(M, ceil(mt, tm) * mr), min(N, ceil(nt, tn) * nr)
            cost = rows * cols + nr * (rows + cols)
            if cost < best_cost or (cost == best_cost and tm * tn < best[0] * best[1]):
                best, best_cost = (tm, tn), cost
    return best


def largest_block_tiles(M, N, mr, nr, grid):
    mt, nt = ceil(M, mr), ceil(N, nr)
    return min(mt, ceil(mt, grid[0])) * min(nt, ceil(nt, grid[1]))


def main():
    kernel = sys.argv[1] if len(sys.argv) > 1 else "avx512"
    teams = [int(t) for t in sys.argv[2:]] or [2, 4, 8, 16]
    mr, nr = TILES[kernel]
    for threads in teams:
        products = differ = 0
        for net, layers in LINEAR.items():
            for B in BATCHES:
                for I, O in layers:
                    for M, N, K in ((B, O, I), (O, I, B), (B, I, O)):  # forward, dw, dx
                        if 2 * M * N * K < 2e6:
                            continue
                        products += 1
                        old, new = old_rule(threads, M, N), new_rule(threads, M, N, mr, nr)
                        if old != new:
                            differ += 1
                            print(f"  {threads} threads {net} batch {B} (M,N,K)={(M, N, K)}: "
                                  f"old {old} ({largest_block_tiles(M, N, mr, nr, old)} tiles), "
                                  f"new {new} ({largest_block_tiles(M, N, mr, nr, new)} tiles)")
        print(f"{kernel} {mr} x {nr}, {threads} threads: {products} products, {differ} differ")


if __name__ == "__main__":
    main()
