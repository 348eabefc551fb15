"""The placement planner: from a measured CostTable (costs.py) to the fastest way to run one
step of the model on this machine, and why.

    plan = hc.plan(model, batch_size=256, input_shape=(1, 28, 28))
    print(plan)              # per layer: its time on each device, where it goes, the crossings
    model.to(plan.placement)

Candidates (each priced in seconds per step, the lowest wins, ties to the simplest):
- every single device, priced from its measured whole step (table.step_s: on a GPU the
  captured graph), not from the sum of its layers;
- the per-layer optimum over the chain (best_chain): exact, memory limits included;
- data-parallel replicas (data_parallel_shares): the batch split over devices, each replica
  running the whole model on its share, the gradients reduced on a master device.

The cost model of a per-layer placement p (chain_step_s), in train mode:
    input crossing "cpu" -> p[0] of input_bytes
  + per layer i: forward + backward + update on p[i]
  + per edge i-1 -> i with p[i-1] != p[i]: act_bytes[i-1] forward and the same bytes back
  + the loss on p[-1].
In infer mode: forward times, the crossings forward only, and the logits back to "cpu".
A value that is missing, None, NaN or inf (a forward, a backward, an update, the loss, a
transfer) means the layer cannot go there (or that crossing is not possible).

Everything here is plain Python over plain data: no core calls except plan()'s measure().
"""

import heapq
import itertools
import math
from dataclasses import dataclass

from .data_parallel import DataParallel
from .errors import InvalidValueError

MODES = ("train", "infer")
SOURCE = "cpu"      # where a batch arrives and where inference returns its logits


# -- reading the table -----------------------------------------------------------------------

def _finite(value):
    """The value as a float when it is a finite non-negative number, else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v >= 0 else None


def _per_layer(table_field, device, i):
    values = table_field.get(device)
    if values is None or i >= len(values):
        return None
    return _finite(values[i])


def _check(table, devices):
    """The devices to plan over (table.devices by default), validated against the table."""
    if table.mode not in MODES:
        raise InvalidValueError(f"cost table mode must be one of {MODES}, got {table.mode!r}")
    if not table.layers:
        raise InvalidValueError("cost table has no layers")
    if isinstance(table.batch_size, bool) or not isinstance(table.batch_size, int) \
            or table.batch_size < 1:
        raise InvalidValueError(f"cost table batch_size must be a positive integer, got "
                                f"{table.batch_size!r}")
    n = len(table.layers)
    for name in ("act_bytes", "param_bytes"):
        if len(getattr(table, name)) != n:
            raise InvalidValueError(f"cost table {name} has {len(getattr(table, name))} "
                                    f"entries for {n} layers")
    if devices is None:
        devices = list(table.devices)
    devices = list(devices)
    if not devices:
        raise InvalidValueError("no devices to plan over")
    unknown = [d for d in devices if d not in table.devices]
    if unknown:
        raise InvalidValueError(f"devices {unknown} are not in the cost table "
                                f"(it has {list(table.devices)})")
    if len(set(devices)) != len(devices):
        raise InvalidValueError(f"devices named twice: {devices}")
    return devices


def _layer_s(table, device, i):
    """Seconds of layer i on device in one step (forward, and in train mode backward and
    update), or None when it cannot go there."""
    f = _per_layer(table.forward_s, device, i)
    if f is None or table.mode == "infer":
        return f
    b = _per_layer(table.backward_s, device, i)
    u = _per_layer(table.update_s, device, i)
    return None if b is None or u is None else f + b + u


def _loss_s(table, device):
    """Seconds of the loss on device (0 in infer mode), None when it cannot run there."""
    return 0.0 if table.mode == "infer" else _finite(table.loss_s.get(device))


def _transfer_s(table, src, dst, nbytes):
    """Seconds to copy nbytes from src to dst (0 on the same device), None when the table has
    no (finite) cost for that pair."""
    if src == dst or not nbytes:
        return 0.0
    t = table.transfer.get((src, dst))
    if t is None:
        return None
    return _finite(t.seconds(nbytes))


def _crossing_s(table, src, dst, nbytes):
    """One edge of the chain: the activation forward, and in train mode its gradient back."""
    there = _transfer_s(table, src, dst, nbytes)
    if there is None or table.mode == "infer":
        return there
    back = _transfer_s(table, dst, src, nbytes)
    return None if back is None else there + back


def _head_s(table, device, source):
    """The batch crossing from where it arrives to the first layer's device."""
    return _transfer_s(table, source, device, table.input_bytes)


def _tail_s(table, device, source):
    """After the last layer: the loss there (train), or the logits back to the host (infer)."""
    if table.mode == "train":
        return _loss_s(table, device)
    return _transfer_s(table, device, source, table.act_bytes[-1])


def _memory(table, device, i):
    values = table.layer_memory.get(device)
    if values is None or i >= len(values) or values[i] is None:
        return 0
    return values[i]


def _limit(table, device):
    """Bytes available on device, or math.inf when the table gives no limit."""
    limit = table.memory_limit.get(device)
    return math.inf if limit is None else limit


def _add(a, b):
    return None if a is None or b is None else a + b


# -- per-layer placement over the chain --------------------------------------------------------

def chain_step_s(table, placement, source=SOURCE):
    """Predicted seconds of one step with layer i on placement[i] (the model of the module
    docstring), or math.inf when a layer cannot go where it is put or a device's memory
    limit is exceeded."""
    n = len(table.layers)
    if len(placement) != n:
        raise InvalidValueError(f"placement names {len(placement)} devices for {n} layers")
    _check(table, list(dict.fromkeys(placement)))
    total = _add(_head_s(table, placement[0], source), _layer_s(table, placement[0], 0))
    for i in range(1, n):
        total = _add(total, _crossing_s(table, placement[i - 1], placement[i],
                                        table.act_bytes[i - 1]))
        total = _add(total, _layer_s(table, placement[i], i))
    total = _add(total, _tail_s(table, placement[-1], source))
    used = {}
    for i, d in enumerate(placement):
        used[d] = used.get(d, 0) + _memory(table, d, i)
    if total is None or any(used[d] > _limit(table, d) for d in used):
        return math.inf
    return total


class _Chain:
    """The chain's costs read once: node[i] {device: seconds of layer i there} (only where it
    can go), edge(i, d, e) for layer i - 1 on d to layer i on e, head and tail per device."""

    def __init__(self, table, devices, source):
        self.n = n = len(table.layers)
        self.node = [{d: s for d in devices if (s := _layer_s(table, d, i)) is not None}
                     for i in range(n)]
        self.head = {d: s for d in devices if (s := _head_s(table, d, source)) is not None}
        self.tail = {d: s for d in devices if (s := _tail_s(table, d, source)) is not None}
        self._edge = [None] + [{(d, e): s for d in self.node[i - 1] for e in self.node[i]
                                if (s := _crossing_s(table, d, e, table.act_bytes[i - 1]))
                                is not None} for i in range(1, n)]

    def edge(self, i, d, e):
        return self._edge[i].get((d, e))

    def cost_to_go(self, penalty=None):
        """togo[i][d]: the least cost of layers i+1.. and the tail given layer i on d, each
        layer j on e costing node + penalty(j, e); only states with a way to the end."""
        extra = penalty or (lambda i, d: 0.0)
        togo = [None] * self.n
        togo[-1] = {d: self.tail[d] for d in self.node[-1] if d in self.tail}
        for i in range(self.n - 2, -1, -1):
            togo[i] = {}
            for d in self.node[i]:
                options = [move + self.node[i + 1][e] + extra(i + 1, e) + togo[i + 1][e]
                           for e in togo[i + 1] if (move := self.edge(i + 1, d, e)) is not None]
                if options:
                    togo[i][d] = min(options)
        return togo

    def cheapest(self, togo, penalty=None):
        """The placement that togo's DP picks (ties: the devices listed first), and its cost
        with the penalty; (None, inf) when there is none."""
        extra = penalty or (lambda i, d: 0.0)
        starts = [(self.head[d] + self.node[0][d] + extra(0, d), d) for d in togo[0]
                  if d in self.head]
        if not starts:
            return None, math.inf
        cost, d = min(starts, key=lambda s: s[0] + togo[0][s[1]])
        placement, total = [d], cost + togo[0][d]
        for i in range(1, self.n):
            cost, d = min(((cost + move + self.node[i][e] + extra(i, e), e) for e in togo[i]
                           if (move := self.edge(i, d, e)) is not None),
                          key=lambda s: s[0] + togo[i][s[1]])
            placement.append(d)
        return placement, total


def _multipliers(chain, need, limit, bind, rounds=40):
    """Lagrange multipliers (seconds per byte, one per binding device) for the bound of
    best_chain: any multipliers >= 0 give a valid bound, these are tuned by a few rounds of
    subgradient steps on the chain's dual (the plain DP with bytes priced in)."""
    k = len(bind)
    lam = [0.0] * k
    best, best_lam, step = -math.inf, lam, None
    for _ in range(rounds):
        def penalty(i, d):
            return lam[bind.index(d)] * need[i][bind.index(d)] if d in bind else 0.0
        placement, cost = chain.cheapest(chain.cost_to_go(penalty), penalty)
        if placement is None:
            break
        used = [sum(need[i][j] for i, d in enumerate(placement) if d == bind[j])
                for j in range(k)]
        dual = cost - sum(lam[j] * limit[j] for j in range(k))
        if dual > best:
            best, best_lam = dual, list(lam)
        over = [used[j] - limit[j] for j in range(k)]
        norm = sum(g * g for g in over)
        if all(g <= 0 for g in over) and sum(l * g for l, g in zip(lam, over)) == 0:
            break     # feasible with complementary slackness: the dual is tight
        if step is None:
            step = 0.1 * max(cost, 1e-12) / norm
        lam = [max(0.0, l + step * g) for l, g in zip(lam, over)]
        step *= 0.85
    return best_lam


def best_chain(table, devices=None, source=SOURCE):
    """The exact optimum of per-layer placement over the chain: (list of one device per layer,
    predicted seconds per step), or (None, math.inf) when no placement is possible.

    Dynamic programming over (layer, device), transfer costs on the edges. Without memory
    limits that bind this is the plain DP. Limits make the plain DP inexact, so then it is a
    best-first search over partial placements (layers 0..i, i's device, the bytes used so far
    on each device whose limit can bind), guided by a lower bound on the rest and pruned by
    dominance (a label taken earlier at the same (layer, device) with no more cost and no
    more bytes on any device leaves nothing to gain). The lower bound is the larger of the
    plain DP's cost-to-go and its Lagrangian relaxation (bytes priced in). The first complete
    placement it reaches is the optimum. Fast when one or two limits bind (the GPUs'); with
    every device's limit tight (a near-infeasible packing of a long chain) the search can
    take seconds or more: it stays exact rather than guess."""
    devices = _check(table, devices)
    chain = _Chain(table, devices, source)
    n = chain.n
    togo = chain.cost_to_go()
    # devices whose limit can bind: below what the layers that could go there need
    bind = [d for d in devices
            if sum(_memory(table, d, i) for i in range(n) if d in chain.node[i])
            > _limit(table, d)]
    if not bind:
        return chain.cheapest(togo)
    k = len(bind)
    limit = [_limit(table, d) for d in bind]
    need = [[_memory(table, d, i) for d in bind] for i in range(n)]
    # later[i][j]: the most bytes layers i+1.. could still put on bind[j]; a label with
    # used + later <= limit can no longer hit that limit, and counts as 0 there
    later = [[0] * k for _ in range(n)]
    for i in range(n - 2, -1, -1):
        later[i] = [later[i + 1][j] + (need[i + 1][j] if bind[j] in chain.node[i + 1] else 0)
                    for j in range(k)]
    # fewest[i]: the fewest bytes layers i+1.. need on the binding devices together
    fewest = [0] * n
    for i in range(n - 2, -1, -1):
        fewest[i] = fewest[i + 1] + min(need[i + 1][bind.index(d)] if d in bind else 0
                                        for d in chain.node[i + 1]) if chain.node[i + 1] \
            else math.inf
    lam = _multipliers(chain, need, limit, bind)

    def penalty(i, d):
        return lam[bind.index(d)] * need[i][bind.index(d)] if d in bind else 0.0

    relaxed = chain.cost_to_go(penalty)

    def bound(cost, i, d, used):   # a lower bound of the total of every completion
        return cost + max(togo[i][d], relaxed[i][d] - sum(
            lam[j] * (limit[j] - used[j]) for j in range(k)))

    def memory(used, i, d):
        grown = tuple(u + (need[i][j] if bind[j] == d else 0) for j, u in enumerate(used))
        if any(u > lim for u, lim in zip(grown, limit)) or \
                fewest[i] > sum(lim - u for u, lim in zip(grown, limit)):
            return None
        return grown

    def key(used, i):
        return tuple(0 if u + later[i][j] <= limit[j] else u for j, u in enumerate(used))

    expanded = {}      # (i, d) -> [(cost, memory key)] of the labels taken off the heap
    heap = []          # (lower bound of the total, order, cost, i, d, used, parent)
    order = itertools.count()

    def push(cost, i, d, used, parent):
        if used is not None and d in togo[i]:
            heapq.heappush(heap, (bound(cost, i, d, used), next(order), cost, i, d, used, parent))

    zero = (0,) * k
    for d in chain.node[0]:
        if d in chain.head:
            push(chain.head[d] + chain.node[0][d], 0, d, memory(zero, 0, d), None)
    while heap:
        _, _, cost, i, d, used, parent = heapq.heappop(heap)
        mine = key(used, i)
        seen = expanded.setdefault((i, d), [])
        if any(c <= cost and all(a <= b for a, b in zip(u, mine)) for c, u in seen):
            continue     # one taken earlier costs no more and leaves as much room
        seen.append((cost, mine))
        if i == n - 1:
            placement = [d]
            while parent is not None:
                placement.append(parent[1])
                parent = parent[2]
            return placement[::-1], cost + chain.tail[d]
        for e in chain.node[i + 1]:
            move = chain.edge(i + 1, d, e)
            if move is not None:
                push(cost + move + chain.node[i + 1][e], i + 1, e, memory(used, i + 1, e),
                     (i, d, parent))
    return None, math.inf


# -- data-parallel replicas ----------------------------------------------------------------------

def fit_step_s(step_s):
    """(a, c) with one whole step at batch b predicted as a + c * b, from {batch: seconds}
    measured at one or more batch sizes: a least-squares line through two or more, clamped so
    that neither is negative; proportional (a = 0) through one. None when nothing usable."""
    points = sorted((int(b), _finite(t)) for b, t in (step_s or {}).items())
    points = [(b, t) for b, t in points if t is not None and b > 0]
    if not points:
        return None
    if len(points) == 1 or len({b for b, _ in points}) == 1:
        b = sum(b for b, _ in points)
        return 0.0, sum(t for _, t in points) / b
    k = len(points)
    mb = sum(b for b, _ in points) / k
    mt = sum(t for _, t in points) / k
    sbb = sum((b - mb) ** 2 for b, _ in points)
    c = sum((b - mb) * (t - mt) for b, t in points) / sbb
    a = mt - c * mb
    if c < 0:
        return mt, 0.0
    if a < 0:
        return 0.0, sum(b * t for b, t in points) / sum(b * b for b, _ in points)
    return a, c


def single_device_s(table, device):
    """Predicted seconds of one step with the whole model on device: the measured whole step
    at the batch size when there is one, else the line through the other measured sizes, else
    the sum of its layers; math.inf when the model does not fit or cannot run there."""
    n = len(table.layers)
    if sum(_memory(table, device, i) for i in range(n)) > _limit(table, device):
        return math.inf
    measured = table.step_s.get(device) or {}
    t = _finite(measured.get(table.batch_size))
    if t is not None:
        return t
    line = fit_step_s(measured)
    if line is not None:
        return line[0] + line[1] * table.batch_size
    return chain_step_s(table, [device] * n)


def _update_s(table, device):
    """Seconds of the update of all parameters on device (0 in infer mode)."""
    if table.mode == "infer":
        return 0.0
    return sum(_finite(u) or 0.0 for u in table.update_s.get(device) or [])


def _replica_line(table, device):
    """(a, c): one replica's step on device at sub-batch b, a + c * b, fitted to the measured
    whole steps less the update (done once, on the master); None when the whole model cannot
    run there."""
    if single_device_s(table, device) == math.inf:
        return None
    update = _update_s(table, device)
    measured = {b: max(0.0, t - update) for b, t in (table.step_s.get(device) or {}).items()
                if _finite(t) is not None}
    if not measured:
        whole = chain_step_s(table, [device] * len(table.layers))
        measured = {table.batch_size: max(0.0, whole - update)}
    return fit_step_s(measured)


def _reduce_s(table, devices, master):
    """Gradients of every other replica to the master, summed there, one update there, the
    weights back to every replica: seconds, or None when a transfer is missing. Each sum is
    priced as one update (an upper estimate: it moves fewer bytes). 0 in infer mode."""
    if table.mode == "infer":
        return 0.0
    nbytes = sum(table.param_bytes)
    update = _update_s(table, master)
    total = update
    for d in devices:
        if d != master:
            total = _add(total, _add(_transfer_s(table, d, master, nbytes),
                                     _transfer_s(table, master, d, nbytes)))
            total = _add(total, update)
    return total


def _best_master(table, devices):
    """(master, seconds of the reduction) with the cheapest reduction; ties: listed first."""
    best = (None, None)
    for m in devices:
        s = _reduce_s(table, devices, m)
        if s is not None and (best[1] is None or s < best[1]):
            best = (m, s)
    return best


def _overlapped(used, master):
    """Whether replicas on ``used`` with ``master`` overlap their steps (core Replicas): a GPU
    master and every other replica on the CPU."""
    return master.startswith("cuda") and len(used) > 1 and \
        all(d == "cpu" for d in used if d != master)


def _overlapped_lines(table, lines, used, master):
    """The replicas' lines of an overlapped step, with the fixed costs of each side: the
    master's update on the GPU's; on the host's, its gradients up and the weights down."""
    nbytes = sum(table.param_bytes)
    out = {}
    for d in used:
        a, c = lines[d]
        if d == master:
            extra = _update_s(table, d)
        else:
            extra = _add(_transfer_s(table, d, master, nbytes), _transfer_s(table, master, d, nbytes))
        out[d] = None if extra is None else (a + extra, c)
    return out


def _line_s(line, b):
    return line[0] + line[1] * b if b else 0.0


def _min_max_split(lines, batch_size):
    """Integer sub-batches (each >= 1, summing to batch_size) minimising the slowest replica,
    each replica's time a nondecreasing line: give each next sample to the replica that would
    finish it first (exact for nondecreasing times). Ties: the replica listed first."""
    sizes = [1] * len(lines)
    heap = [(_line_s(line, 2), k) for k, line in enumerate(lines)]
    heapq.heapify(heap)
    for _ in range(batch_size - len(lines)):
        _, k = heapq.heappop(heap)
        sizes[k] += 1
        heapq.heappush(heap, (_line_s(lines[k], sizes[k] + 1), k))
    return sizes


@dataclass
class DataParallelCost:
    """A priced data-parallel split: sub-batches per device (in device order), the master
    that reduces and updates, each replica's predicted seconds, the reduction's, the total."""
    sub_batches: dict
    master: str
    replica_s: dict
    reduce_s: float
    seconds: float
    overlapped: bool = False  # the reduction overlaps the next step: reduce_s is the overhead


def data_parallel_step_s(table, sub_batches, master=None):
    """Price a given split {device: samples} (all >= 0, summing to the batch size): the slowest
    replica plus the reduction on master (default: the cheapest). A DataParallelCost, with
    seconds math.inf when a device cannot hold the model or a transfer is missing."""
    devices = _check(table, [d for d in sub_batches])
    if sum(sub_batches.values()) != table.batch_size or min(sub_batches.values()) < 0:
        raise InvalidValueError(f"sub-batches {sub_batches} must be >= 0 and sum to the batch "
                                f"size {table.batch_size}")
    used = [d for d in devices if sub_batches[d] > 0]
    if len(used) == 1:
        d = used[0]
        s = single_device_s(table, d)
        return DataParallelCost(dict(sub_batches), d, {d: s}, 0.0, s)
    lines = {d: _replica_line(table, d) for d in used}
    if master is None:
        gpus = [d for d in used if d.startswith("cuda")]
        if len(gpus) == 1 and _overlapped(used, gpus[0]):
            master, reduce_s = gpus[0], _reduce_s(table, used, gpus[0])
        else:
            master, reduce_s = _best_master(table, used)
    else:
        reduce_s = _reduce_s(table, used, master) if master in used else None
    if reduce_s is None or any(line is None for line in lines.values()):
        return DataParallelCost(_master_first(sub_batches, master), master, {}, math.inf,
                                math.inf)
    if _overlapped(used, master):
        # The sum, the update and the weights' way back overlap the next step: each side's
        # fixed costs go on its own line, and the step is the slower side, plus what a
        # measured split spent beyond this model (both sides wait for the other in it).
        lines = _overlapped_lines(table, lines, used, master)
        if any(line is None for line in lines.values()):
            return DataParallelCost(_master_first(sub_batches, master), master, {}, math.inf,
                                    math.inf)
        replica_s = {d: _line_s(lines[d], sub_batches[d]) for d in used}
        host = sum(t for d, t in replica_s.items() if d != master)  # the CPU's, in turn
        return DataParallelCost(_master_first(sub_batches, master), master, replica_s,
                                table.dp_overhead_s,
                                max(replica_s[master], host) + table.dp_overhead_s, True)
    replica_s = {d: _line_s(lines[d], sub_batches[d]) for d in used}
    reduce_s += table.dp_overhead_s  # what a measured split spent beyond this model
    return DataParallelCost(_master_first(sub_batches, master), master, replica_s, reduce_s,
                            max(replica_s.values()) + reduce_s)


def _master_first(sub_batches, master):
    """The split with the master listed first (replica 0 of the DataParallel made from it)."""
    return {master: sub_batches[master], **{d: n for d, n in sub_batches.items() if d != master}}


def data_parallel_over(table, devices):
    """The best split with every one of devices taking at least one sample: a DataParallelCost
    (seconds math.inf when impossible). hc.measure times this split to calibrate
    table.dp_overhead_s."""
    lines = [_replica_line(table, d) for d in devices]
    if any(line is None for line in lines) or table.batch_size < len(devices):
        return DataParallelCost({}, None, {}, math.inf, math.inf)
    gpus = [d for d in devices if d.startswith("cuda")]
    if len(gpus) == 1 and _overlapped(devices, gpus[0]):
        fixed = _overlapped_lines(table, dict(zip(devices, lines)), devices, gpus[0])
        if any(line is None for line in fixed.values()):
            return DataParallelCost({}, None, {}, math.inf, math.inf)
        lines = [fixed[d] for d in devices]
    sizes = _min_max_split(lines, table.batch_size)
    return data_parallel_step_s(table, dict(zip(devices, sizes)))


def data_parallel_shares(table, devices):
    """The batch split over replicas on devices (each running the whole model on its share):
    ({device: samples} summing to the batch size, predicted seconds per step). A device that
    does not pay (its replica does not lower the predicted step) is left out, so the result
    is never predicted slower than the best single device; ties: fewer devices, then the ones
    listed first. Shares can be given to DataParallel as they are (it normalises them)."""
    devices = _check(table, devices)
    best = None
    for k in range(1, len(devices) + 1):
        for subset in itertools.combinations(devices, k):
            cost = data_parallel_over(table, list(subset))
            if best is None or cost.seconds < best.seconds:
                best = cost
    return best.sub_batches, best.seconds


# -- the plan -----------------------------------------------------------------------------------

def _fmt_s(s):
    if s is None or s == math.inf:
        return "-"
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.1f} us"


def _fmt_bytes(b):
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.2f} {unit}"
    return f"{int(b)} B"


PER_LAYER = "per-layer optimum"


def _dp_name(devices):
    return "data parallel " + "+".join(devices)


class Plan:
    """The planner's answer for one model, batch size, input shape and mode.

    placement: what model.to accepts: a device string, a list of one device per layer, or a
        DataParallel with its shares.
    predicted_step_s: predicted seconds of one step of the chosen placement.
    alternatives: {readable name: predicted seconds per step} of every candidate that can
        run: "cpu", "cuda:0", ..., "per-layer optimum", "data parallel cpu+cuda:0", ...
    chosen: the name of the chosen alternative.
    table, mode: the CostTable planned from and its mode.
    str(plan): per layer its time on each device and where it goes, the crossings, the
        totals and every alternative, so a user sees why."""

    def __init__(self, table, placement, predicted_step_s, alternatives, chosen, chain,
                 data_parallel, unfit):
        self.table = table
        self.mode = table.mode
        self.placement = placement
        self.predicted_step_s = predicted_step_s
        self.alternatives = alternatives
        self.chosen = chosen
        self.chain = chain                  # the per-layer optimum (list), or None
        self.data_parallel = data_parallel  # {name: DataParallelCost}
        self.unfit = unfit                  # {name: why it is not an alternative}

    def __repr__(self):
        return (f"Plan({self.placement!r}, predicted {_fmt_s(self.predicted_step_s)} per "
                f"{self.mode} step at batch {self.table.batch_size})")

    def __str__(self):
        t = self.table
        devices = list(t.devices)
        what = "forward + backward + update" if t.mode == "train" else "forward"
        rows = [[f"layer ({what})"] + devices + [PER_LAYER]]
        chain = self.chain or [None] * len(t.layers)
        for i, name in enumerate(t.layers):
            times = [_layer_s(t, d, i) for d in devices]
            rows.append([name] + ["-" if s is None else _fmt_s(s) for s in times]
                        + [chain[i] or "-"])
            if i + 1 < len(t.layers):
                crossing = ""
                if chain[i] is not None and chain[i] != chain[i + 1]:
                    s = _crossing_s(t, chain[i], chain[i + 1], t.act_bytes[i])
                    crossing = f"{chain[i]} -> {chain[i + 1]} {_fmt_s(s)}"
                rows.append([f"  -> {_fmt_bytes(t.act_bytes[i])} to layer {i + 1}"]
                            + [""] * len(devices) + [crossing])
        if t.mode == "train":
            rows.append(["loss"] + [_fmt_s(s) if s is not None else "-"
                                    for s in (_loss_s(t, d) for d in devices)]
                        + [chain[-1] or "-"])
        sums = [chain_step_s(t, [d] * len(t.layers)) for d in devices]
        rows.append(["total, sum of the layers"] + [_fmt_s(s) for s in sums]
                    + [_fmt_s(chain_step_s(t, chain)) if self.chain else "-"])
        rows.append([f"measured whole step at batch {t.batch_size}"]
                    + [_fmt_s(single_device_s(t, d)) for d in devices] + [""])
        widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
        lines = [f"Plan for a {t.mode} step at batch {t.batch_size}, input {tuple(t.input_shape)}"
                 f" (a batch arrives on {SOURCE}, {_fmt_bytes(t.input_bytes)})"]
        for r in rows:
            lines.append("  ".join(c.ljust(w) if k == 0 else c.rjust(w)
                                   for k, (c, w) in enumerate(zip(r, widths))).rstrip())
        lines.append("alternatives (predicted seconds per step):")
        width = max(len(n) for n in list(self.alternatives) + list(self.unfit))
        for name, s in sorted(self.alternatives.items(), key=lambda kv: kv[1]):
            detail = ""
            if name in self.data_parallel:
                dp = self.data_parallel[name]
                detail = ("  (" + ", ".join(f"{d} {b}" for d, b in dp.sub_batches.items())
                          + f" samples; slowest replica {_fmt_s(max(dp.replica_s.values()))}"
                          + (f", the sum and update on {dp.master} overlapping the next step"
                             f", measured overhead {_fmt_s(dp.reduce_s)})" if dp.overlapped else
                             f", reduce and update on {dp.master} {_fmt_s(dp.reduce_s)})"))
            elif name == PER_LAYER:
                detail = (f"  (all on {self.chain[0]}: the same plan)" if len(set(self.chain)) == 1
                          else "  (" + " ".join(self.chain) + ")")
            mark = "  <- chosen" if name == self.chosen else ""
            lines.append(f"  {name.ljust(width)}  {_fmt_s(s).rjust(10)}{mark}{detail}")
        for name, why in self.unfit.items():
            lines.append(f"  {name.ljust(width)}  {'-'.rjust(10)}  ({why})")
        return "\n".join(lines)


# A data-parallel split is chosen over the simpler candidates only when predicted this much
# faster: its host side moves with the host's load and Python's pace, a single device's step
# does not (on the H200 machine two runs of one lenet5 split at batch 1024 measured 0.96x and
# 1.01x the GPU alone, predicted 1.04x).
DATA_PARALLEL_MARGIN = 0.03


def make_plan(table, margin=0.0):
    """The Plan for a CostTable: every candidate priced, the fastest chosen. Candidates are
    ranked simplest first (single devices in table order, the per-layer optimum, then data
    parallel over more and more devices); a later one is chosen only when it is faster than
    every earlier one by more than ``margin`` (a fraction, default 0: ties to the simplest),
    a data-parallel one by at least DATA_PARALLEL_MARGIN."""
    devices = _check(table, None)
    n = len(table.layers)
    candidates = []     # (name, placement, seconds), simplest first
    unfit = {}
    for d in devices:
        s = single_device_s(table, d)
        if s == math.inf:
            unfit[d] = "does not fit or cannot run there"
        else:
            candidates.append((d, d, s))
    chain, chain_s = best_chain(table)
    if chain is None:
        unfit[PER_LAYER] = "no placement fits"
    elif len(set(chain)) > 1:
        candidates.append((PER_LAYER, chain, chain_s))
    dp_costs = {}
    # Replicas split a training batch; a forward pass runs on one device or one chain.
    subsets = [] if table.mode == "infer" else \
        [s for k in range(2, len(devices) + 1) for s in itertools.combinations(devices, k)]
    if len(devices) > 4:   # too many to list: all of them, and the best subset
        best, _ = data_parallel_shares(table, devices)
        subsets = [tuple(devices)] + ([tuple(best)] if 1 < len(best) < len(devices) else [])
    for subset in subsets:
        name = _dp_name(subset)
        cost = data_parallel_over(table, list(subset))
        if cost.seconds == math.inf:
            unfit[name] = "a replica does not fit, or a transfer is missing"
            continue
        dp_costs[name] = cost
        candidates.append((name, DataParallel(cost.sub_batches), cost.seconds))
    if not candidates:
        raise InvalidValueError(f"no placement of the {n} layers can run on {devices}")
    chosen = candidates[0]
    for cand in candidates[1:]:
        need = max(margin, DATA_PARALLEL_MARGIN) if cand[0] in dp_costs else margin
        if cand[2] < chosen[2] * (1 - need):
            chosen = cand
    alternatives = {name: s for name, _, s in candidates}
    if chain is not None and len(set(chain)) == 1 and chain[0] in alternatives:
        # all on one device: the same plan as that device, priced as its measured step
        alternatives[PER_LAYER] = alternatives[chain[0]]
    return Plan(table, chosen[1], chosen[2], alternatives, chosen[0], chain, dp_costs, unfit)


def plan(model, batch_size, input_shape, devices=None, mode="train", optimizer_states=1):
    """Measure the model on this machine (hc.measure, cached) and plan: a Plan whose
    .placement model.to accepts. mode: "train" (one training step) or "infer" (a forward).
    ``optimizer_states``: the optimizer's buffers per parameter (SGD 1, Adam 2), which the
    memory limits count."""
    from .measure import measure

    table = measure(model, batch_size, input_shape, devices=devices, mode=mode)
    return make_plan(table.with_optimizer_states(optimizer_states))
