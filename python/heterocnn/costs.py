"""The measured costs the placement planner works from: one table per (model, batch size,
input shape, devices, mode), filled by hc.measure (measure.py) and read by hc.plan
(placement.py). A table is plain data, so the planner can be tested on made-up ones.

Units: seconds and bytes. Layer i's times are for the whole batch on that device, with the
ReLU it fuses counted in its own time (the fused ReLU then costs 0). Devices are canonical
names: "cpu", "cuda:0", ...
"""

from dataclasses import dataclass, field, replace

from .errors import InvalidValueError


@dataclass
class Transfer:
    """Cost of copying b bytes from one device to another: latency_s + b / bytes_per_s."""
    latency_s: float
    bytes_per_s: float

    def seconds(self, nbytes):
        return self.latency_s + nbytes / self.bytes_per_s if nbytes else 0.0


@dataclass
class CostTable:
    mode: str                  # "train" or "infer" (infer: backward_s, update_s are zeros)
    batch_size: int
    input_shape: tuple         # one sample, e.g. (1, 28, 28)
    layers: list               # readable names, "0: Conv2d(1, 6, 5, 1, 2)", ...
    devices: list              # ["cpu", "cuda:0", ...]
    forward_s: dict            # device -> [seconds per layer]
    backward_s: dict           # device -> [seconds per layer]
    loss_s: dict               # device -> seconds of the loss (forward and gradient)
    update_s: dict             # device -> [seconds of the update of layer i's parameters]
    input_bytes: int           # the batch as it arrives (float32 on the host)
    act_bytes: list            # bytes of layer i's output at batch_size (= input of i + 1)
    param_bytes: list          # bytes of layer i's parameters (values only)
    layer_memory: dict         # device -> [bytes layer i needs there: parameters, gradients,
                               #            optimizer state, its activations and workspace]
    memory_limit: dict         # device -> bytes available for the model's step
    transfer: dict             # (src, dst) -> Transfer, for every ordered pair of devices
    step_s: dict               # device -> {batch size: measured seconds of one whole step with
                               #            the model all on that device, as fit runs it
                               #            (a captured graph on a GPU)}
    # Seconds a data-parallel step takes beyond its slowest replica and the reduction as the
    # planner prices them (host work and waits that overlap nothing: a replica step is
    # synchronous, a single-device step overlaps the next one), measured on a real split of
    # the batch over the devices; 0 where not measured.
    dp_overhead_s: float = 0.0
    notes: list = field(default_factory=list)  # what was measured, cached or re-measured

    def with_optimizer_states(self, states):
        """This table (measured with one optimizer buffer per parameter, SGD's momentum) with
        its training step's layer memory counting ``states`` buffers instead (Adam: 2)."""
        if isinstance(states, bool) or not isinstance(states, int) or not 0 <= states <= 8:
            raise InvalidValueError(f"optimizer_states must be an integer from 0 to 8, got "
                             f"{states!r:.100}")
        if states == 1 or self.mode != "train":
            return self
        extra = [(states - 1) * p for p in self.param_bytes]
        return replace(self, layer_memory={d: [m + e for m, e in zip(mem, extra)]
                                           for d, mem in self.layer_memory.items()})
