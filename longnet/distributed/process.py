"""Processes and shards: joining the process group torchrun describes (or a group of
one), the helpers every collective here uses, and how one sequence is split across the
ranks (``ShardLayout``, ``shard_layout``, ``split_lengths``).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# --------------------------------------------------------------------------- process groups


def loopback_interface() -> str | None:
    """Name of the loopback network interface ("lo" on Linux, "lo0" on macOS), if any.

    Setting ``GLOO_SOCKET_IFNAME`` to it keeps gloo's connections on 127.0.0.1."""
    import socket

    names = [name for _, name in socket.if_nameindex()]
    for name in ("lo", "lo0"):
        if name in names:
            return name
    return None


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment; return
    ``(rank, world_size)``. Without torchrun's variables, a group of one process on
    127.0.0.1 (so the same code runs unlaunched). NCCL when CUDA is present, else gloo."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    timeout = timedelta(seconds=timeout_s)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        dist.init_process_group(backend, timeout=timeout)
    else:
        import socket

        with socket.socket() as probe:  # a free port on loopback only
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if backend == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ and loopback_interface():
            os.environ["GLOO_SOCKET_IFNAME"] = loopback_interface()
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0,
                                world_size=1, timeout=timeout)
    return dist.get_rank(), dist.get_world_size()


def _active(group) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def _rank_and_size(group) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _comm_device(group, like: torch.device | None = None) -> torch.device:
    """Where a collective's tensors must live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return like if like is not None and like.type == "cpu" else torch.device("cpu")


_READY_GROUPS: set = set()


def _ready(group) -> None:
    """NCCL wants the first point-to-point call on a group to involve every rank: make
    a collective the group's first call (every rank runs the sharded attention together)."""
    key = id(group)
    if key in _READY_GROUPS:
        return
    if dist.get_backend(group) == "nccl":
        dist.all_reduce(torch.zeros(1, device=_comm_device(group)), group=group)
    _READY_GROUPS.add(key)


# --------------------------------------------------------------------------- shard bookkeeping


@dataclass(frozen=True)
class ShardLayout:
    """How one sequence is split: ``lengths[p]`` tokens on rank p (of the group), in
    order; this process is ``rank``. ``offset`` is the absolute position of the first
    token of rank 0 (non-zero when earlier tokens live in a ``Memory``)."""

    lengths: tuple[int, ...]
    rank: int
    offset: int = 0

    def __post_init__(self):
        if any(n < 0 for n in self.lengths) or not 0 <= self.rank < len(self.lengths):
            raise ValueError(f"bad shard layout: lengths {self.lengths}, rank {self.rank}")

    @property
    def world_size(self) -> int:
        return len(self.lengths)

    def start_of(self, rank: int) -> int:
        return self.offset + sum(self.lengths[:rank])

    def end_of(self, rank: int) -> int:
        return self.start_of(rank) + self.lengths[rank]

    @property
    def start(self) -> int:
        """Absolute position of this rank's first token."""
        return self.start_of(self.rank)

    @property
    def end(self) -> int:
        return self.end_of(self.rank)

    @property
    def local_length(self) -> int:
        return self.lengths[self.rank]

    @property
    def total(self) -> int:
        """Tokens over all ranks."""
        return sum(self.lengths)


def shard_layout(local_length: int, group=None, *, offset: int = 0,
                 device: torch.device | None = None) -> ShardLayout:
    """All-gather every rank's shard length (a collective: every rank of ``group`` calls
    it) and return the layout. Outside a process group: a layout of one rank."""
    rank, world = _rank_and_size(group)
    if world == 1:
        return ShardLayout((int(local_length),), 0, offset)
    device = _comm_device(group, device)
    mine = torch.tensor([int(local_length)], dtype=torch.int64, device=device)
    everyone = torch.empty(world, dtype=torch.int64, device=device)
    dist.all_gather_into_tensor(everyone, mine, group=group)
    return ShardLayout(tuple(int(n) for n in everyone.tolist()), rank, offset)


def split_lengths(total: int, world_size: int, *, offset: int = 0, align: int = 1) -> tuple[int, ...]:
    """Contiguous, near-equal shard lengths for ``total`` tokens starting at absolute
    position ``offset``. With ``align`` > 1 the cuts fall on multiples of ``align``
    (absolute positions) where that keeps shards non-empty, so that a dense local
    level of segment ``align`` needs no communication."""
    if world_size < 1 or total < 0:
        raise ValueError("split_lengths needs world_size >= 1 and total >= 0")
    cuts = [offset]
    for p in range(1, world_size):
        ideal = offset + (total * p) // world_size
        if align > 1:
            snapped = round(ideal / align) * align
            if cuts[-1] < snapped < offset + total:
                ideal = snapped
        cuts.append(min(max(ideal, cuts[-1]), offset + total))
    cuts.append(offset + total)
    return tuple(b - a for a, b in itertools.pairwise(cuts))
