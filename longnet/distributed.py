"""Sequence parallelism for dilated attention on ``torch.distributed`` (LongNet §3).

Each rank holds one contiguous shard of a long sequence, ranks in order along it
(NCCL on GPUs, gloo on CPU; launch with ``torchrun``). Per level (w, r):

- A level whose segments all lie inside this rank's shard runs locally, through the
  single-process ``longnet.attention.dilated_attention`` (no communication).
- Otherwise the ranks that share a segment gather each other's rows of that segment,
  only those the heads' offsets select: per kv head at most ``min(r, Hq/Hkv)`` offsets
  × their rows of the segment. That is about ``w / r`` rows whatever the sequence
  length N, so the bytes a rank receives per level do not grow with N
  (``bench/distributed.py`` shows it). Each rank then attends its local queries to the
  rows of its segments: with ``is_causal`` to the ranks before it AND its own rows (the
  official implementation's causal slicing drops a rank's own keys; this one does not),
  otherwise to every rank of the segment.

How the segment all-gather is done. The ranks of one segment are a contiguous run of
ranks that changes with the level and, with uneven shards, overlaps the next segment's
run; a process group per run would have to be created by every process of the job in
one global order (``torch.distributed.new_group``). Instead each rank posts, in one
``batch_isend_irecv`` per call, its selected rows to the ranks of its segments that
read them (the later ones when causal, all others otherwise) and receives theirs: an
all-gather restricted to the segment, causal ranks receiving only what they attend to.
Its backward sends each received buffer's gradient back to its owner, which sums them:
the reduce-scatter of the gradients.
- Levels are mixed by their log-sum-exps exactly as ``longnet.attention.merge_levels``.
- A sliding level 0 (``local_window`` W, ``LongNetConfig.local_window``): each rank's
  queries read the previous W - 1 rows, which may lie on several earlier ranks when
  shards are shorter than W. Each rank sends its rows from the first position its
  nearest reader needs to every later rank that reads any of them (a farther reader
  reads a suffix of the same buffer), through the same exchange and gradient return as
  the far levels, then runs ``longnet.attention.sliding_window_attention`` with its
  queries bottom-right aligned, mixed with the far levels with bias column 0.
- Attention sinks (``attention_sinks`` S, ``LongNetConfig.attention_sinks``): positions
  0..S-1 stay in level 0 for every query whose window has moved past them (sink j seen
  from p iff j <= p - W, so always from an earlier position: on this rank or an earlier
  one). The ranks holding them (rank 0, or the first few when shards are shorter than
  S) send them to the later ranks that see any, through the same exchange and gradient
  return (its own tag); each rank merges its sink term into the window's (out, lse)
  before level 0's bias applies, as ``longnet.attention`` does.

The result equals ``longnet.attention.dilated_attention`` on the concatenated sequence
(same segments ``t // w``, head offsets ``(t % w) % r == h % r``, grouped-query heads,
"dilated" rotary positions, ``level_bias``), in values and in gradients.

How a non-local level runs. For the heads sharing one offset o, the kept rows of every
segment form a dense "compact" sequence (row j of a segment = position ``s·w + o + j·r``),
so the level becomes one ``level_attention`` call with segment length ``ceil((w-o)/r)``
and rate 1 on [gathered rows of earlier ranks, own rows], own rows bottom-right aligned.
Rotary positions are applied to the rows before the call (a row's position is its index
in the compact segment, which is what "dilated" positions are), so non-causal levels can
put the later ranks' rows in any order.

Gradients. The whole sharded attention of one call is one autograd node: its forward
keeps the local graph (built on detached inputs and on the received buffers), its
backward takes that graph's gradients and returns the received buffers' gradients to
their owners in one exchange. Doing the communication inside one node keeps it in the
same order on every rank, which autograd's scheduling of separate communication nodes
would not guarantee, and every rank takes part even where its gradients are zero.

Also here: shard bookkeeping (``ShardLayout``, ``shard_layout`` all-gathers the
lengths), a sequence-parallel forward / training step for ``LongNetLM``
(``sharded_forward``, ``train_step``), and a sequence-parallel memory build
(``memory_append``, ``broadcast_memory``) that leaves every rank with exactly the state
a single process reading the same stream builds.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from longnet.attention import (
    _check_inputs,
    _levels,
    level_attention,
    merge_levels,
    sink_attention,
    sink_visibility,
    sliding_window_attention,
)
from longnet.attention import (
    dilated_attention as _local_dilated_attention,
)

__all__ = [
    "ShardLayout",
    "all_reduce_gradients",
    "broadcast_memory",
    "broadcast_tokens",
    "dilated_attention",
    "init_distributed",
    "loopback_interface",
    "memory_append",
    "next_token_shard",
    "record_communication",
    "sequence_parallel_loss",
    "shard_layout",
    "sharded_forward",
    "split_lengths",
    "train_step",
]


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


# --------------------------------------------------------------------------- communication stats


_RECORDERS: list[dict] = []


@contextlib.contextmanager
def record_communication():
    """Count the bytes each all-gather of the sharded attention delivers to this rank
    (its output buffer), by level: ``with record_communication() as stats: ...`` then
    ``stats["gathered_bytes"][level]`` and ``stats["calls"][level]``."""
    stats = {"gathered_bytes": {}, "calls": {}}
    _RECORDERS.append(stats)
    try:
        yield stats
    finally:
        _RECORDERS.remove(stats)


def _record(level: int, nbytes: int) -> None:
    for stats in _RECORDERS:
        stats["gathered_bytes"][level] = stats["gathered_bytes"].get(level, 0) + nbytes
        stats["calls"][level] = stats["calls"].get(level, 0) + 1


# --------------------------------------------------------------------------- planning


def _count(lo: int, hi: int, seg_start: int, offset: int, rate: int) -> int:
    """How many positions t in [lo, hi) have (t - seg_start) % rate == offset."""
    if hi <= lo:
        return 0
    first = lo + (offset - (lo - seg_start)) % rate
    return max(0, -(-(hi - first) // rate))


def _first(lo: int, seg_start: int, offset: int, rate: int) -> int:
    return lo + (offset - (lo - seg_start)) % rate


@dataclass(frozen=True)
class _Exchange:
    """This rank's part of the all-gather among the ranks of one segment. A rank's
    buffer holds its selected rows of the segment packed by (kv head, slot), no padding."""

    segment: int
    send_to: tuple[int, ...]  # layout ranks that read my rows of the segment
    recv_from: tuple[int, ...]  # layout ranks whose rows I read, in order
    recv_sizes: tuple[int, ...]  # rows in each of their buffers
    send_heads: np.ndarray  # [rows] kv head of each row I send
    send_rows: np.ndarray  # [rows] my local row of each


@dataclass(frozen=True)
class _OffsetPlan:
    """The query heads sharing offset o at one level, and the compact rows they use."""

    offset: int
    heads: np.ndarray  # query heads
    kv: np.ndarray  # key/value head of each key head (distinct kv heads when GQA fits)
    slot: np.ndarray  # slot of each key head in the exchanged buffers / memory state
    rows: np.ndarray  # local rows kept at this offset, in order
    positions: np.ndarray  # their index in their compact segment
    segment_rows: int  # compact segment length ceil((w - o) / r)
    n_prefix: int  # rows taken from a Memory state (compact positions 0..n_prefix-1)
    before: np.ndarray | None  # [len(kv), n] flat rows of the "before" exchange
    after: np.ndarray | None  # [len(kv), n] flat rows of the "after" exchange
    after_position: int  # compact position of the first "after" row
    split: int  # local rows in segments before the last one (non-causal split)
    one_segment: bool  # all local rows lie in one segment


@dataclass(frozen=True)
class _LevelPlan:
    level: int
    w: int
    r: int
    local: bool  # every segment touching this shard lies inside it
    exchanges: tuple[_Exchange, ...] = ()
    before: int | None = None  # index of the exchange with the earlier ranks' rows
    after: int | None = None  # index of the exchange with the later ranks' rows
    offsets: tuple[_OffsetPlan, ...] = ()
    prefix_start: int | None = None


def _members(layout: ShardLayout, seg_lo: int, seg_hi: int) -> tuple[int, ...]:
    return tuple(p for p in range(layout.world_size)
                 if layout.lengths[p] and layout.start_of(p) < seg_hi and layout.end_of(p) > seg_lo)


def _head_groups(n_q: int, n_kv: int, rate: int, offset: int):
    """Query heads at ``offset``, and their kv heads and slots (one entry per distinct kv
    head when each repeats equally in order, so grouped-query kernels apply)."""
    group = n_q // n_kv
    slots = min(rate, group)
    heads = np.arange(offset, n_q, rate)
    kv = heads // group
    slot = (heads % group) % slots
    distinct, first = np.unique(kv, return_index=True)
    rep = len(heads) // len(distinct)
    if rep * len(distinct) == len(heads) and np.array_equal(kv, np.repeat(distinct, rep)):
        return heads, distinct, slot[first]
    return heads, kv, slot


def _rows_in(layout: ShardLayout, rank: int, seg_start: int, seg_end: int) -> tuple[int, int]:
    return max(layout.start_of(rank), seg_start), min(layout.end_of(rank), seg_end)


def _counts(layout: ShardLayout, rank: int, seg_start: int, seg_end: int, r: int,
            n_kv: int, group_size: int) -> np.ndarray:
    """``[n_kv, slots]``: how many rows of the segment ``rank`` holds at each (kv head,
    slot) offset; its buffer packs them in this order."""
    lo, hi = _rows_in(layout, rank, seg_start, seg_end)
    slots = min(r, group_size)
    return np.array([[_count(lo, hi, seg_start, (g * group_size + c) % r, r) for c in range(slots)]
                     for g in range(n_kv)], dtype=np.int64).reshape(n_kv, slots)


def _flat_rows(layout: ShardLayout, exchange: _Exchange, ranks, w: int, r: int, o: int,
               kv: np.ndarray, slot: np.ndarray, end: int, n_kv: int, group_size: int) -> np.ndarray:
    """Indices, into the concatenation of the buffers received in ``exchange``, of the
    rows at offset o that ``ranks`` (in order) hold, per key head: ``[len(kv), n]``."""
    seg_start = exchange.segment * w
    seg_end = min(seg_start + w, end)
    per_member = []
    for m in ranks:
        index = exchange.recv_from.index(m)
        base = sum(exchange.recv_sizes[:index])
        counts = _counts(layout, m, seg_start, seg_end, r, n_kv, group_size)
        starts = base + np.concatenate(([0], np.cumsum(counts.reshape(-1))[:-1])).reshape(counts.shape)
        per_member.append([starts[g, s] + np.arange(counts[g, s]) for g, s in zip(kv, slot)])
    if not per_member:
        return np.zeros((len(kv), 0), dtype=np.int64)
    return np.stack([np.concatenate([pm[j] for pm in per_member]) for j in range(len(kv))])


@lru_cache(maxsize=256)
def _plan_level(layout: ShardLayout, level: int, w: int, r: int, n_q: int, n_kv: int,
                is_causal: bool, prefix_start: int | None) -> _LevelPlan:
    """Everything rank ``layout.rank`` does at level (w, r); identical arithmetic on
    every rank, so all agree on who sends what to whom."""
    a, b = layout.start, layout.end
    end = layout.offset + layout.total
    if a == b:
        return _LevelPlan(level, w, r, local=True)
    s_lo, s_hi = a // w, (b - 1) // w
    if a % w == 0 and (b % w == 0 or b == end):
        return _LevelPlan(level, w, r, local=True)

    group_size = n_q // n_kv
    slots = min(r, group_size)
    me = layout.rank
    exchanges, before_index, after_index = [], None, None
    for s in sorted({s_lo, s_hi}):
        seg_lo, seg_hi = s * w, min(s * w + w, end)
        members = _members(layout, seg_lo, seg_hi)
        if len(members) < 2:
            continue
        earlier = tuple(m for m in members if m < me)
        later = tuple(m for m in members if m > me)
        send_to = later if is_causal else earlier + later
        recv_from = earlier if is_causal else earlier + later

        lo, _ = _rows_in(layout, me, seg_lo, seg_hi)
        counts = _counts(layout, me, seg_lo, seg_hi, r, n_kv, group_size)
        heads, rows = [], []
        for g in range(n_kv):
            for c in range(slots):
                off = (g * group_size + c) % r
                heads.append(np.full(counts[g, c], g))
                rows.append(_first(lo, seg_lo, off, r) - a + r * np.arange(counts[g, c]))
        sizes = tuple(int(_counts(layout, m, seg_lo, seg_hi, r, n_kv, group_size).sum())
                      for m in recv_from)
        exchanges.append(_Exchange(s, send_to, recv_from, sizes,
                                   np.concatenate(heads), np.concatenate(rows)))
        if s == s_lo and earlier:
            before_index = len(exchanges) - 1
        if s == s_hi and later and not is_causal:
            after_index = len(exchanges) - 1

    positions_all = np.arange(a, b)
    in_segment = positions_all % w
    offsets = []
    use_prefix = prefix_start is not None and prefix_start == s_lo * w and layout.offset > s_lo * w
    if is_causal and s_lo * w < layout.offset and not use_prefix:
        raise ValueError(f"level {level} (w={w}) reaches back to position {s_lo * w}, before the "
                         f"layout's offset {layout.offset}: pass that level's memory state as prefix")
    for o in range(min(r, n_q)):
        if o >= w:
            break
        heads, kv, slot = _head_groups(n_q, n_kv, r, o)
        keep = (in_segment % r) == o
        rows = np.nonzero(keep)[0]
        positions = (in_segment[keep] - o) // r
        seg_lo = s_lo * w
        n_prefix = _count(seg_lo, layout.offset, seg_lo, o, r) if use_prefix else 0

        before = after = None
        if before_index is not None:
            ex = exchanges[before_index]
            before = _flat_rows(layout, ex, [m for m in ex.recv_from if m < me], w, r, o, kv, slot, end,
                                n_kv, group_size)
        after_position = 0
        if after_index is not None:
            ex = exchanges[after_index]
            after = _flat_rows(layout, ex, [m for m in ex.recv_from if m > me], w, r, o, kv, slot, end,
                               n_kv, group_size)
            after_position = _count(s_hi * w, b, s_hi * w, o, r)
        split = int(np.searchsorted(a + rows, s_hi * w)) if len(rows) else 0
        offsets.append(_OffsetPlan(
            offset=o, heads=heads, kv=kv, slot=slot, rows=rows, positions=positions,
            segment_rows=-(-(w - o) // r), n_prefix=n_prefix, before=before, after=after,
            after_position=after_position, split=split, one_segment=s_lo == s_hi))
    return _LevelPlan(level, w, r, local=False, exchanges=tuple(exchanges), before=before_index,
                      after=after_index, offsets=tuple(offsets),
                      prefix_start=s_lo * w if use_prefix else None)


@dataclass(frozen=True)
class _WindowPlan:
    """This rank's part of a sliding level 0 (``local_window`` W): its queries at
    positions [a, b) read keys [reach, b), ``reach = a - (W - 1)`` (at least 0). Keys
    before ``layout.offset`` come from a memory's window rows (``window_prefix``), the
    rest from the earlier ranks. A rank sends one buffer to all its readers: its rows
    from the first position its NEAREST reader needs (a farther reader needs a suffix
    of that), so the existing all-gather/reduce-scatter machinery applies unchanged."""

    reach: int  # the first position this rank's queries read (== start for an empty shard)
    exchange: _Exchange | None  # None: this rank neither sends nor receives
    skips: tuple[int, ...] = ()  # per rank of exchange.recv_from: rows per head to drop


@lru_cache(maxsize=256)
def _plan_window(layout: ShardLayout, window: int, n_kv: int) -> _WindowPlan:
    """Identical arithmetic on every rank, so all agree on who sends which rows."""
    def need_from(p):  # the first position at or after the offset that rank p reads
        return max(layout.offset, layout.start_of(p) - (window - 1))

    def payload_from(p):  # the first position of rank p's buffer, None if nobody reads it
        if not layout.lengths[p]:
            return None
        for m in range(p + 1, layout.world_size):
            if layout.lengths[m]:
                return max(layout.start_of(p), need_from(m)) if need_from(m) < layout.end_of(p) else None
        return None

    me, a, b = layout.rank, layout.start, layout.end
    reach = max(0, a - (window - 1)) if b > a else a
    send_to, recv_from, sizes, skips = [], [], [], []
    mine = payload_from(me)
    if mine is not None:
        send_to = [m for m in range(me + 1, layout.world_size)
                   if layout.lengths[m] and need_from(m) < b]
    if b > a:
        for p in range(me):
            first = payload_from(p)
            if first is None or need_from(me) >= layout.end_of(p):
                continue
            recv_from.append(p)
            sizes.append(n_kv * (layout.end_of(p) - first))
            skips.append(max(first, need_from(me)) - first)
    if not send_to and not recv_from:
        return _WindowPlan(reach, None)
    rows = np.arange(mine, b) - a if mine is not None and send_to else np.zeros(0, np.int64)
    exchange = _Exchange(-1, tuple(send_to), tuple(recv_from), tuple(sizes),
                         np.repeat(np.arange(n_kv), len(rows)), np.tile(rows, n_kv))
    return _WindowPlan(reach, exchange, tuple(skips))


@dataclass(frozen=True)
class _SinkPlan:
    """This rank's part of the attention sinks (``attention_sinks`` S with a sliding level
    0 of W): sink j (absolute position j < S) is visible to the query at p iff
    ``j <= p - W``, so this rank's queries see sinks ``0 .. need - 1``, all on this rank or
    earlier ones. Those before ``layout.offset`` come from a memory (``sink_prefix``), the
    rest from the ranks holding them: each holder sends all its sink rows to every later
    rank that sees any of them (a reader keeps the prefix it needs), through the same
    exchange and gradient return as the far levels."""

    need: int  # sinks this rank's queries can see (columns of its sink attention)
    exchange: _Exchange | None  # None: this rank neither sends nor receives sink rows
    own: int  # of this rank's own rows, how many are sinks it reads itself


@lru_cache(maxsize=256)
def _plan_sinks(layout: ShardLayout, window: int, sinks: int, n_kv: int) -> _SinkPlan:
    """Identical arithmetic on every rank, so all agree on who sends which rows."""
    n_sinks = min(sinks, layout.offset + layout.total)

    def need_of(p):
        return max(0, min(n_sinks, layout.end_of(p) - window)) if layout.lengths[p] else 0

    def held_by(p):  # the sink positions rank p holds: [start_of(p), end)
        return max(layout.start_of(p), min(layout.end_of(p), n_sinks))

    me, a = layout.rank, layout.start
    need = need_of(me)
    send_to = []
    if held_by(me) > a:
        send_to = [m for m in range(me + 1, layout.world_size) if need_of(m) > a]
    recv_from, sizes = [], []
    for p in range(me):
        if held_by(p) > layout.start_of(p) and need > layout.start_of(p):
            recv_from.append(p)
            sizes.append(n_kv * (held_by(p) - layout.start_of(p)))
    own = max(0, need - a)
    if not send_to and not recv_from:
        return _SinkPlan(need, None, own)
    rows = np.arange(held_by(me) - a) if send_to else np.zeros(0, np.int64)
    exchange = _Exchange(-1, tuple(send_to), tuple(recv_from), tuple(sizes),
                         np.repeat(np.arange(n_kv), len(rows)), np.tile(rows, n_kv))
    return _SinkPlan(need, exchange, own)


# --------------------------------------------------------------------------- tensors


def _as_index(values: np.ndarray, device) -> slice | torch.Tensor:
    """A slice when ``values`` is an arithmetic progression (a view, no copy), else a
    LongTensor."""
    n = len(values)
    if n == 0:
        return slice(0, 0)
    step = int(values[1] - values[0]) if n > 1 else 1
    if step > 0 and np.array_equal(values, values[0] + step * np.arange(n)):
        return slice(int(values[0]), int(values[-1]) + 1, step)
    return torch.as_tensor(values, dtype=torch.long, device=device)


def _take(x: torch.Tensor, heads: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """``x[:, heads][:, :, rows]`` for ``x [B, H, T, D]``, as a view when it can be."""
    h, t = _as_index(heads, x.device), _as_index(rows, x.device)
    if isinstance(h, slice) and isinstance(t, slice):
        return x[:, h, t]
    if isinstance(h, slice):
        return x[:, h].index_select(2, t)
    if isinstance(t, slice):
        return x.index_select(1, h)[:, :, t]
    return x[:, h[:, None], t[None, :]]


def _positions(values, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.long, device=device)


@dataclass
class _Gathered:
    """One segment's exchange in a forward pass: what this rank sent and received."""

    exchange: _Exchange
    level: int
    sent: torch.Tensor  # [2, B, L, D] (k and v), built from this rank's k and v
    received: list  # [2, B, L_m, D] per rank of exchange.recv_from
    flat: torch.Tensor | None = None  # [2, B, sum L_m, D]


def _peer(group, rank: int) -> int:
    return dist.get_global_rank(group, rank) if group is not None else rank


def _exchange_rows(k, v, plans: Sequence[_LevelPlan], group, track: bool) -> list[list[_Gathered]]:
    """Send and receive the rows of every non-local level of one call, in one batch
    (tag = level: two ranks share at most one segment per level)."""
    batch, dim = k.shape[0], k.shape[-1]
    ops, result = [], []
    for plan in plans:
        level = []
        for ex in plan.exchanges:
            heads = torch.as_tensor(ex.send_heads, device=k.device)
            rows = torch.as_tensor(ex.send_rows, device=k.device)
            sent = torch.stack((k[:, heads, rows], v[:, heads, rows]))  # [2, B, L, D]
            payload = sent.detach().contiguous()
            received = []
            for m in ex.send_to:  # both sides know the sizes: empty buffers are not sent
                if payload.numel():
                    ops.append(dist.P2POp(dist.isend, payload, _peer(group, m), group, plan.level))
            for m, size in zip(ex.recv_from, ex.recv_sizes):
                buffer = k.new_empty((2, batch, size, dim))
                if size:
                    ops.append(dist.P2POp(dist.irecv, buffer, _peer(group, m), group, plan.level))
                received.append(buffer)
            level.append(_Gathered(ex, plan.level, sent, received))
        result.append(level)
    if ops:
        for work in dist.batch_isend_irecv(ops):
            work.wait()
    for plan, level in zip(plans, result):
        for gathered in level:
            _record(plan.level, sum(x.numel() * x.element_size() for x in gathered.received))
            if track:
                for x in gathered.received:
                    x.requires_grad_()
    return result


def _flat(gathered: _Gathered) -> torch.Tensor:
    if gathered.flat is None:
        gathered.flat = torch.cat(gathered.received, 2) if len(gathered.received) > 1 \
            else gathered.received[0]
    return gathered.flat


def _rows_from(gathered: _Gathered, index: np.ndarray):
    """k, v ``[B, n_kv, n, D]`` for flat row indices ``[n_kv, n]`` of an exchange."""
    flat = _flat(gathered)
    picked = flat[:, :, torch.as_tensor(index.reshape(-1), dtype=torch.long, device=flat.device)]
    two, batch, _, dim = picked.shape
    picked = picked.view(two, batch, index.shape[0], index.shape[1], dim)
    return picked[0], picked[1]


def _prefix_rows(state, plan: _OffsetPlan, dtype):
    """k, v ``[1, n_kv, n_prefix, D]`` of a Memory level state (``kv [2, Hkv, slots,
    blocks, D]``, keys already rotated)."""
    device = state.kv.device
    kv = torch.as_tensor(plan.kv, dtype=torch.long, device=device)[:, None]
    slot = torch.as_tensor(plan.slot, dtype=torch.long, device=device)[:, None]
    blocks = torch.arange(plan.n_prefix, device=device)[None, :]
    rows = state.kv[:, kv, slot, blocks].to(dtype)  # [2, n_kv, n_prefix, D]
    return rows[0][None], rows[1][None]


def _attend_offset(q, k, v, level: _LevelPlan, plan: _OffsetPlan, gathered, prefix_state,
                   rotary, scale, is_causal):
    """(out, lse) ``[B, heads, rows, D]`` for the heads at one offset of one level."""
    device = q.device
    q_rows = _take(q, plan.heads, plan.rows)
    k_rows, v_rows = _take(k, plan.kv, plan.rows), _take(v, plan.kv, plan.rows)
    if rotary is not None:
        where = _positions(plan.positions, device)
        q_rows, k_rows = rotary(q_rows, where), rotary(k_rows, where)

    before_k, before_v = [], []
    if plan.n_prefix:
        pk, pv = _prefix_rows(prefix_state, plan, k.dtype)
        before_k.append(pk.expand(k.shape[0], -1, -1, -1))
        before_v.append(pv.expand(k.shape[0], -1, -1, -1))
    if plan.before is not None and plan.before.shape[1]:
        gk, gv = _rows_from(gathered[level.before], plan.before)
        if rotary is not None:
            gk = rotary(gk, torch.arange(plan.n_prefix, plan.n_prefix + gk.shape[2], device=device))
        before_k.append(gk)
        before_v.append(gv)
    after_k = after_v = None
    if plan.after is not None and plan.after.shape[1]:
        after_k, after_v = _rows_from(gathered[level.after], plan.after)
        if rotary is not None:
            after_k = rotary(after_k, torch.arange(plan.after_position,
                                                   plan.after_position + after_k.shape[2],
                                                   device=device))

    def call(queries, keys, values, segment, causal):
        keys = torch.cat(keys, 2) if len(keys) > 1 else keys[0]
        values = torch.cat(values, 2) if len(values) > 1 else values[0]
        return level_attention(queries, keys, values, segment, 1, is_causal=causal, scale=scale)

    if after_k is None:
        return call(q_rows, before_k + [k_rows], before_v + [v_rows], plan.segment_rows, is_causal)
    # Non-causal with later ranks' rows in the last segment: the segments before it as
    # usual; the last one alone, its rows in any order (rotary is already applied).
    outs, lses = [], []
    split = plan.split
    if split:
        out, lse = call(q_rows[:, :, :split], before_k + [k_rows[:, :, :split]],
                        before_v + [v_rows[:, :, :split]], plan.segment_rows, False)
        outs.append(out)
        lses.append(lse)
    last_k = [after_k] + (before_k if plan.one_segment else []) + [k_rows[:, :, split:]]
    last_v = [after_v] + (before_v if plan.one_segment else []) + [v_rows[:, :, split:]]
    n_keys = sum(x.shape[2] for x in last_k)
    out, lse = call(q_rows[:, :, split:], last_k, last_v, n_keys, False)
    outs.append(out)
    lses.append(lse)
    if len(outs) == 1:
        return outs[0], lses[0]
    return torch.cat(outs, 2), torch.cat(lses, 2)


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _attend_level(q, k, v, level: _LevelPlan, gathered, prefix_state, rotary, scale, is_causal):
    B, n_q, n, D = q.shape
    out = lse = None
    for plan in level.offsets:
        if not len(plan.rows):
            continue
        part_out, part_lse = _attend_offset(q, k, v, level, plan, gathered, prefix_state,
                                            rotary, scale, is_causal)
        if len(plan.heads) == n_q and len(plan.rows) == n:  # this offset covers everything
            return part_out, part_lse
        if out is None:
            out = q.new_zeros(B, n_q, n, D)
            lse = torch.full((B, n_q, n), float("-inf"), dtype=part_lse.dtype, device=q.device)
        heads = torch.as_tensor(plan.heads, dtype=torch.long, device=q.device)[:, None]
        rows = torch.as_tensor(plan.rows, dtype=torch.long, device=q.device)[None, :]
        out[:, heads, rows] = part_out.to(out.dtype)
        lse[:, heads, rows] = part_lse
    if out is None:  # no head keeps any local row at this level
        out = q.new_zeros(B, n_q, n, D)
        lse = torch.full((B, n_q, n), float("-inf"), dtype=_lse_dtype(q.dtype), device=q.device)
    return out, lse


@dataclass
class _Spec:
    levels: tuple[tuple[int, int], ...]
    layout: ShardLayout
    group: object
    is_causal: bool
    scale: float
    rotary: Callable | None
    prefix: Sequence | None  # per level: a Memory LevelState or None
    local_window: int | None = None  # level 0 is a sliding window of this many positions
    window_prefix: tuple | None = None  # (k, v [Hkv, n, D], first position) of a Memory
    attention_sinks: int = 0  # the sequence's first positions stay in level 0
    sink_prefix: tuple | None = None  # (k, v [Hkv, n, D]) of a Memory: sinks 0..n-1


def _attend_window(q, k, v, spec: _Spec, plan: _WindowPlan, gathered: list):
    """(out, lse) of the sliding level 0 for this rank's queries: one
    ``sliding_window_attention`` call on [memory rows, earlier ranks' rows, own rows],
    own rows bottom-right aligned. With rotary, rows are rotated at their true positions
    (as the single-process model does: same angles, same rounding) or, reading a memory
    (``window_prefix`` given), at their position minus ``plan.reach``, as a Memory does
    (rotary is relative, and angles computed for small numbers stay precise however long
    the stream); the memory's keys, stored rotated at ``position - first``, are turned by
    ``first - reach``."""
    layout, rotary = spec.layout, spec.rotary
    B, n_kv, D = k.shape[0], k.shape[1], k.shape[3]
    origin = 0 if spec.window_prefix is None else plan.reach
    keys, values = [], []
    if plan.reach < layout.offset:
        pk, pv, first = spec.window_prefix
        first = int(first)
        if not first <= plan.reach or first + pk.shape[1] != layout.offset:
            raise ValueError(f"window_prefix holds positions {first}..{first + pk.shape[1] - 1}; "
                             f"the window needs {plan.reach}..{layout.offset - 1}")
        pk = pk[:, plan.reach - first:].to(k.dtype)
        pv = pv[:, plan.reach - first:].to(v.dtype)
        if rotary is not None and first != origin:
            pk = rotary(pk, torch.full((pk.shape[1],), first - origin, dtype=torch.long,
                                       device=pk.device))
        keys.append(pk[None].expand(B, -1, -1, -1))
        values.append(pv[None].expand(B, -1, -1, -1))
    fresh_k, fresh_v = [], []
    for g in gathered:
        for x, skip in zip(g.received, plan.skips):
            rows = x.view(2, B, n_kv, -1, D)[:, :, :, skip:]
            fresh_k.append(rows[0])
            fresh_v.append(rows[1])
    fresh_k.append(k)
    fresh_v.append(v)
    fresh_k = torch.cat(fresh_k, 2) if len(fresh_k) > 1 else fresh_k[0]
    if rotary is not None:
        first_fresh = layout.end - fresh_k.shape[2]
        fresh_k = rotary(fresh_k, torch.arange(first_fresh - origin, layout.end - origin,
                                               device=k.device))
        q = rotary(q, torch.arange(layout.start - origin, layout.end - origin, device=q.device))
    keys.append(fresh_k)
    values.extend(fresh_v)
    keys = torch.cat(keys, 2) if len(keys) > 1 else keys[0]
    values = torch.cat(values, 2) if len(values) > 1 else values[0]
    return sliding_window_attention(q, keys, values, spec.local_window, scale=spec.scale)


def _attend_sinks(q, k, v, spec: _Spec, plan: _SinkPlan, gathered: list):
    """(out, lse) of this rank's queries over the sinks they can see (``plan.need``
    columns: [memory's sinks, earlier ranks' sink rows, own sink rows]), as
    ``longnet.attention`` computes level 0's sink term: with rotary, queries rotated at
    ``W + S`` and sink j at position j (a memory's sinks are stored rotated so); without
    it q and k as given."""
    layout, rotary = spec.layout, spec.rotary
    B, n_kv, D = k.shape[0], k.shape[1], k.shape[3]
    keys, values = [], []
    from_prefix = min(plan.need, layout.offset)
    if from_prefix:  # checked before the exchange (_run)
        pk, pv = spec.sink_prefix
        keys.append(pk[None, :, :from_prefix].to(k.dtype).expand(B, -1, -1, -1))
        values.append(pv[None, :, :from_prefix].to(v.dtype).expand(B, -1, -1, -1))
    fresh_k, fresh_v = [], []
    for g in gathered:
        for p, x in zip(g.exchange.recv_from, g.received):
            rows = x.view(2, B, n_kv, -1, D)[:, :, :, :plan.need - layout.start_of(p)]
            fresh_k.append(rows[0])
            fresh_v.append(rows[1])
    if plan.own:
        fresh_k.append(k[:, :, :plan.own])
        fresh_v.append(v[:, :, :plan.own])
    if fresh_k:
        fresh_k = torch.cat(fresh_k, 2) if len(fresh_k) > 1 else fresh_k[0]
        if rotary is not None:
            fresh_k = rotary(fresh_k, torch.arange(from_prefix, plan.need, device=k.device))
        keys.append(fresh_k)
        values.extend(fresh_v)
    keys = torch.cat(keys, 2) if len(keys) > 1 else keys[0]
    values = torch.cat(values, 2) if len(values) > 1 else values[0]
    if keys.shape[2] != plan.need:
        raise RuntimeError(f"sink rows: {keys.shape[2]} gathered, {plan.need} planned")
    if rotary is not None:
        q = rotary(q, torch.full((q.shape[2],), spec.local_window + spec.attention_sinks,
                                 dtype=torch.long, device=q.device))
    visible = sink_visibility(torch.arange(layout.start, layout.end, device=q.device), plan.need,
                              spec.local_window)
    return sink_attention(q, keys, values, visible, spec.scale)


def _run(spec: _Spec, q, k, v, level_bias, track: bool):
    """The sharded attention: (out, lse, gathered buffers in order)."""
    n_q, n_kv = q.shape[1], k.shape[1]
    prefix = spec.prefix or [None] * len(spec.levels)
    plans = []
    for i, (w, r) in enumerate(spec.levels):
        if i == 0 and spec.local_window is not None:
            continue  # the sliding window, planned apart
        state = prefix[i]
        start = None if state is None else int(state.start)
        plans.append(_plan_level(spec.layout, i, w, r, n_q, n_kv, spec.is_causal, start))
    local = [p.level for p in plans if p.local]
    outs, lses, bias_columns = [], [], []
    if local and q.shape[2]:
        bias = None if level_bias is None else level_bias[:, local]
        out, lse = _local_dilated_attention(
            q, k, v, [spec.levels[i][0] for i in local], [spec.levels[i][1] for i in local],
            is_causal=spec.is_causal, scale=spec.scale, return_lse=True, level_bias=bias,
            rotary=spec.rotary)
        outs.append(out)
        lses.append(lse)
        bias_columns.append(None)
    remote = [p for p in plans if not p.local]
    window_plan = None
    if spec.local_window is not None:
        window_plan = _plan_window(spec.layout, spec.local_window, n_kv)
        if window_plan.reach < spec.layout.offset and spec.window_prefix is None:
            raise ValueError(f"the sliding local window reaches back to position "
                             f"{window_plan.reach}, before the layout's offset "
                             f"{spec.layout.offset}: pass the memory's window rows as "
                             "window_prefix")
        exchanges = () if window_plan.exchange is None else (window_plan.exchange,)
        specials = [_LevelPlan(0, spec.local_window, 1, local=False, exchanges=exchanges)]
        sink_plan = None
        if spec.attention_sinks:
            sink_plan = _plan_sinks(spec.layout, spec.local_window, spec.attention_sinks, n_kv)
            from_prefix = min(sink_plan.need, spec.layout.offset)
            if from_prefix and (spec.sink_prefix is None
                                or spec.sink_prefix[0].shape[1] < from_prefix):
                raise ValueError(f"the attention sinks 0..{from_prefix - 1} lie before the "
                                 f"layout's offset {spec.layout.offset}: pass the memory's "
                                 "sink rows as sink_prefix")
            exchanges = () if sink_plan.exchange is None else (sink_plan.exchange,)
            # Tag L (no level has it): the sinks' rows travel apart from the window's.
            specials.append(_LevelPlan(len(spec.levels), 0, 1, local=False, exchanges=exchanges))
        # Tag 0: level 0's own segments are not exchanged when it is a window.
        remote = specials + remote
    exchanged = _exchange_rows(k, v, remote, spec.group, track) if remote else []
    gathered_all = [g for level in exchanged for g in level]
    if window_plan is not None:
        n = len(specials)
        window_gathered, sink_gathered = exchanged[0], exchanged[1] if n > 1 else []
        remote, exchanged = remote[n:], exchanged[n:]
        if q.shape[2]:
            out, lse = _attend_window(q, k, v, spec, window_plan, window_gathered)
            if sink_plan is not None and sink_plan.need:  # one softmax with the window
                sink_out, sink_lse = _attend_sinks(q, k, v, spec, sink_plan, sink_gathered)
                out, lse = merge_levels([out, sink_out], [lse, sink_lse])
            outs.append(out)
            lses.append(lse)
            bias_columns.append(0)
    for plan, gathered in zip(remote, exchanged):
        out, lse = _attend_level(q, k, v, plan, gathered, prefix[plan.level], spec.rotary,
                                 spec.scale, spec.is_causal)
        outs.append(out)
        lses.append(lse)
        bias_columns.append(plan.level)
    if not outs:  # an empty shard
        return (q.new_zeros(q.shape),
                torch.full(q.shape[:3], float("-inf"), dtype=_lse_dtype(q.dtype), device=q.device),
                gathered_all)
    if len(outs) == 1 and (level_bias is None or bias_columns[0] is None):
        return outs[0], lses[0], gathered_all
    bias = None
    if level_bias is not None:
        zero = level_bias.new_zeros(level_bias.shape[0])
        bias = torch.stack([zero if c is None else level_bias[:, c] for c in bias_columns], 1)
    out, lse = merge_levels(outs, lses, level_bias=bias)
    return out, lse, gathered_all


class _ShardedAttention(torch.autograd.Function):
    """One autograd node per call; see the module docstring (Gradients)."""

    @staticmethod
    def forward(ctx, spec, q, k, v, level_bias):
        q_, k_, v_ = (x.detach().requires_grad_(x.requires_grad) for x in (q, k, v))
        bias_ = None if level_bias is None else \
            level_bias.detach().requires_grad_(level_bias.requires_grad)
        with torch.enable_grad():
            out, lse, gathered = _run(spec, q_, k_, v_, bias_, track=True)
        ctx.graph = (out, lse, q_, k_, v_, bias_, gathered)
        ctx.group = spec.group
        ctx.set_materialize_grads(False)
        return out.detach(), lse.detach()

    @staticmethod
    def backward(ctx, dout, dlse):
        out, lse, q_, k_, v_, bias_, gathered = ctx.graph
        ctx.graph = None
        received = [x for g in gathered for x in g.received]
        inputs = [q_, k_, v_] + ([bias_] if bias_ is not None else []) + received
        wanted = [x for x in inputs if x.requires_grad]
        outputs, cotangents = [], []
        for tensor, grad in ((out, dout), (lse, dlse)):
            if grad is not None and tensor.requires_grad:
                outputs.append(tensor)
                cotangents.append(grad)
        found = {}
        if outputs and wanted:
            grads = torch.autograd.grad(outputs, wanted, cotangents, allow_unused=True)
            found = {id(x): g for x, g in zip(wanted, grads)}
        # Each received buffer's gradient goes back to its owner, which sums what its
        # readers return (the reduce-scatter). Every rank posts the mirror image of its
        # forward exchange, so all take part even where the gradients are zero.
        ops, sends, returns = [], [], []
        group = ctx.group
        for g in gathered:
            for m, x in zip(g.exchange.recv_from, g.received):
                grad = found.get(id(x))
                grad = torch.zeros_like(x) if grad is None else grad.contiguous()
                if grad.numel():
                    ops.append(dist.P2POp(dist.isend, grad, _peer(group, m), group, g.level))
            returned = [torch.zeros_like(g.sent) for _ in g.exchange.send_to]
            for m, x in zip(g.exchange.send_to, returned):
                if x.numel():
                    ops.append(dist.P2POp(dist.irecv, x, _peer(group, m), group, g.level))
            if returned and g.sent.requires_grad:
                sends.append(g.sent)
                returns.append(returned)
        if ops:
            for work in dist.batch_isend_irecv(ops):
                work.wait()
        send_grads = [torch.stack(r).sum(0) if len(r) > 1 else r[0] for r in returns]
        dq, dk, dv = (found.get(id(x)) for x in (q_, k_, v_))
        if sends:
            extra_k, extra_v = torch.autograd.grad(sends, [k_, v_], send_grads, allow_unused=True)
            dk = extra_k if dk is None else (dk if extra_k is None else dk + extra_k)
            dv = extra_v if dv is None else (dv if extra_v is None else dv + extra_v)
        dbias = found.get(id(bias_)) if bias_ is not None else None
        return None, dq, dk, dv, dbias


def dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    *,
    is_causal: bool = True,
    group=None,
    scale: float | None = None,
    return_lse: bool = False,
    level_bias: torch.Tensor | None = None,
    rotary: Callable | None = None,
    layout: ShardLayout | None = None,
    prefix: Sequence | None = None,
    local_window: int | None = None,
    window_prefix: tuple | None = None,
    attention_sinks: int = 0,
    sink_prefix: tuple | None = None,
):
    """Dilated attention over a sequence split across the ranks of ``group``.

    ``q [B, Hq, n, D]``, ``k, v [B, Hkv, n, D]`` are this rank's contiguous shard (n may
    differ between ranks, and may be 0); ranks are in order along the sequence. The
    result (``[B, Hq, n, D]``, and the lse ``[B, Hq, n]`` when ``return_lse``) is this
    rank's part of ``longnet.dilated_attention`` on the concatenated sequence, with the
    same ``scale``, ``level_bias`` and ``rotary`` meaning. Differentiable in q, k, v and
    ``level_bias``; every rank of ``group`` must call it (it communicates).

    ``layout``: the shard lengths (``shard_layout``); all-gathered when None — pass it
    to save that collective in every layer. ``prefix`` (used by ``memory_append``): per
    level, a ``longnet.memory.LevelState`` holding the selected rows of positions before
    ``layout.offset`` (causal, batch 1, keys already rotated).

    ``local_window`` W: level 0 is a dense sliding window of the last W positions, as in
    ``longnet.dilated_attention(..., local_window=W)`` (causal only, dilation rate 1,
    ``level_bias[:, 0]`` is its bias). Each rank receives the previous W - 1 rows from
    the earlier ranks (however many ranks that spans; gradients go back to their owners).
    ``window_prefix`` (used by ``memory_append``): ``(k, v, first)``, k and v
    ``[Hkv, n, D]`` holding positions ``first .. layout.offset - 1`` (a Memory's window
    rows; keys rotated at ``position - first`` when ``rotary`` is given, else as the
    queries are), needed when the window reaches back before ``layout.offset``.

    ``attention_sinks`` S (with ``local_window``): the sequence's first S positions stay
    visible in level 0 to every query whose window has moved past them, as in
    ``longnet.dilated_attention(..., attention_sinks=S)``. The ranks holding them send
    them to the later ranks that see them (gradients go back to their owners).
    ``sink_prefix`` (used by ``memory_append``): ``(k, v)`` ``[Hkv, n, D]``, the sinks at
    positions ``0 .. n - 1`` (n = ``min(S, layout.offset)``; a Memory's ``sinks``, keys
    rotated at their own positions when ``rotary`` is given), needed when a query sees
    a sink before ``layout.offset``.
    """
    levels = _levels(segment_lengths, dilation_rates)
    _check_inputs(q, k, v, levels, level_bias)
    if local_window is not None:
        local_window = int(local_window)
        if local_window < 1:
            raise ValueError(f"the sliding window must be >= 1 token; got {local_window}")
        if not is_causal:
            raise ValueError("a sliding local window needs is_causal=True")
        if levels[0][1] != 1:
            raise ValueError(f"the sliding local window replaces a dense level 0 (dilation "
                             f"rate 1), not one with rate {levels[0][1]}")
    if window_prefix is not None and (local_window is None or q.shape[0] != 1):
        raise ValueError("window_prefix needs local_window and batch size 1")
    attention_sinks = int(attention_sinks)
    if attention_sinks < 0 or (attention_sinks and local_window is None):
        raise ValueError(f"attention_sinks must be >= 0 and need a sliding local_window; got "
                         f"attention_sinks={attention_sinks}, local_window={local_window}")
    if sink_prefix is not None and (not attention_sinks or q.shape[0] != 1):
        raise ValueError("sink_prefix needs attention_sinks and batch size 1")
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"sharded attention is self-attention over the shard: q has "
                         f"{q.shape[2]} rows, k {k.shape[2]} (decode with a Memory instead)")
    if prefix is not None and (not is_causal or q.shape[0] != 1):
        raise ValueError("a memory prefix needs causal attention and batch size 1")
    if layout is None:
        layout = shard_layout(q.shape[2], group, device=q.device)
    elif layout.local_length != q.shape[2]:
        raise ValueError(f"layout gives this rank {layout.local_length} tokens, q has {q.shape[2]}")
    if layout.world_size != _rank_and_size(group)[1]:
        raise ValueError(f"layout has {layout.world_size} ranks, the group {_rank_and_size(group)[1]}")
    if _active(group):
        _ready(group)
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    spec = _Spec(levels, layout, group, is_causal,
                 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale), rotary, prefix,
                 local_window, window_prefix, attention_sinks, sink_prefix)
    needs_grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (q, k, v, level_bias))
    if needs_grad:
        out, lse = _ShardedAttention.apply(spec, q, k, v, level_bias)
    else:
        with torch.no_grad():
            out, lse, _ = _run(spec, q, k, v, level_bias, track=False)
    out = out.to(q.dtype)
    return (out, lse) if return_lse else out


# --------------------------------------------------------------------------- the model


def _layer_bias(model, index: int):
    return getattr(model.layers[index].self_attn, "level_bias", None)


def sharded_forward(model, input_ids: torch.Tensor, *, layout: ShardLayout | None = None,
                    group=None, logits: bool = True) -> torch.Tensor:
    """``LongNetLM`` over a sequence split across ranks: this rank's ``input_ids [B, n]``
    (absolute positions ``layout.start ..``) → its logits ``[B, n, V]`` (or the final
    hidden states), equal to the rows of ``model(whole_sequence)``."""
    if layout is None:
        layout = shard_layout(input_ids.shape[1], group, device=input_ids.device)
    c = model.config
    positions = torch.arange(layout.start, layout.end, device=input_ids.device)

    def attend_for_layer(index):
        bias = _layer_bias(model, index)

        def attend(q, k, v):
            rotary = model.rotary
            if c.position_mode == "absolute":
                q, k, rotary = model.rotary(q, positions), model.rotary(k, positions), None
            return dilated_attention(q, k, v, c.segment_lengths, c.dilation_rates, is_causal=True,
                                     group=group, rotary=rotary, level_bias=bias, layout=layout,
                                     local_window=c.local_window,
                                     attention_sinks=c.attention_sinks)

        return attend

    return model.run_layers(input_ids, attend_for_layer, logits=logits)


def next_token_shard(read: Callable[[int, int], torch.Tensor], total: int, group=None, *,
                     align: int = 1) -> tuple[torch.Tensor, torch.Tensor, ShardLayout]:
    """This rank's part of next-token training on sequences of ``total + 1`` tokens:
    ``read(start, end)`` returns tokens [start, end) (``[T]`` or ``[B, T]``; each rank
    reads only its slice plus one token). Returns ``(inputs, targets, layout)``: inputs
    are tokens [a, b), targets tokens [a+1, b+1), the shards cut by
    ``split_lengths(total, world, align=align)``. No communication."""
    rank, world = _rank_and_size(group)
    layout = ShardLayout(split_lengths(total, world, align=align), rank)
    tokens = torch.as_tensor(read(layout.start, layout.end + 1), dtype=torch.long)
    if tokens.shape[-1] != layout.local_length + 1:
        raise ValueError(f"read({layout.start}, {layout.end + 1}) gave {tokens.shape[-1]} tokens")
    return tokens[..., :-1], tokens[..., 1:], layout


def sequence_parallel_loss(model, inputs: torch.Tensor, targets: torch.Tensor, *,
                           layout: ShardLayout | None = None, group=None,
                           ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy of a sequence split across ranks. ``inputs, targets``:
    this rank's ``[B, n]``. Returns ``(local_loss, mean_loss)``: backpropagate
    ``local_loss`` (this rank's summed loss over the global target count, so the sum
    over ranks is the mean); ``mean_loss`` is that global mean (detached, same on every
    rank)."""
    if inputs.dim() == 1:
        inputs, targets = inputs[None], targets[None]
    logits = sharded_forward(model, inputs, layout=layout, group=group)
    logits = logits if logits.dtype == torch.float64 else logits.float()
    summed = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             ignore_index=ignore_index, reduction="sum")
    counts = torch.stack([(targets != ignore_index).sum().to(torch.float64),
                          summed.detach().to(torch.float64)])
    if _active(group):
        device = _comm_device(group, counts.device)
        moved = counts.to(device)
        dist.all_reduce(moved, group=group)
        counts = moved.to(counts.device)
    total = counts[0].clamp_min(1)
    return summed / total.to(summed.dtype), counts[1] / total


def all_reduce_gradients(parameters, group=None, bucket_elements: int = 1 << 24) -> None:
    """Sum the gradients of replicated parameters over the ranks (in buckets). A
    parameter without a gradient on this rank counts as zeros, so every rank makes the
    same calls."""
    if not _active(group):
        return
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket, size = [], 0

    def flush():
        if not bucket:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        device = _comm_device(group, flat.device)
        moved = flat.to(device)
        dist.all_reduce(moved, group=group)
        flat = moved.to(flat.device)
        at = 0
        for p in bucket:
            p.grad.copy_(flat[at: at + p.numel()].view_as(p.grad))
            at += p.numel()
        bucket.clear()

    seen = set()
    for p in params:
        if id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        if bucket and (size + p.numel() > bucket_elements or bucket[0].grad.dtype != p.grad.dtype):
            flush()
            size = 0
        bucket.append(p)
        size += p.numel()
    flush()


def train_step(model, optimizer, inputs: torch.Tensor, targets: torch.Tensor, *,
               layout: ShardLayout | None = None, group=None, max_grad_norm: float | None = None,
               ignore_index: int = -100, autocast_dtype: torch.dtype | None = None) -> dict:
    """One optimizer step of next-token training on a sequence split across ranks.

    Parameters are replicated: every rank runs its shard forward and backward (the
    sharded attention exchanges rows and gradients), then the gradients are summed over
    the ranks, so every rank takes the same step as one process on the whole sequence.
    Returns ``{"loss": global mean loss, "tokens": targets counted, "grad_norm": ...}``."""
    from longnet.model import autocast

    model.train()
    optimizer.zero_grad(set_to_none=True)
    dtype = autocast_dtype or torch.float32
    with autocast(model.device, dtype):
        local_loss, mean_loss = sequence_parallel_loss(model, inputs, targets, layout=layout,
                                                       group=group, ignore_index=ignore_index)
    local_loss.backward()
    all_reduce_gradients(model.parameters(), group)
    grad_norm = None
    if max_grad_norm is not None:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
    optimizer.step()
    return {"loss": float(mean_loss), "grad_norm": grad_norm}


# --------------------------------------------------------------------------- the memory


def broadcast_tokens(token_ids, group=None, src: int = 0, device=None) -> torch.Tensor:
    """Every rank gets rank ``src``'s 1-D token ids (others pass None)."""
    rank, world = _rank_and_size(group)
    if world == 1:
        return torch.as_tensor(np.asarray(token_ids, dtype=np.int64))
    device = _comm_device(group, device)
    count = torch.zeros(1, dtype=torch.int64, device=device)
    if rank == src:
        ids = torch.as_tensor(np.asarray(token_ids, dtype=np.int64), device=device)
        count.fill_(ids.numel())
    source = dist.get_global_rank(group, src) if group is not None else src
    dist.broadcast(count, source, group=group)
    if rank != src:
        ids = torch.empty(int(count), dtype=torch.int64, device=device)
    dist.broadcast(ids, source, group=group)
    return ids.cpu()


def broadcast_memory(memory, group=None, src: int = 0) -> None:
    """Make every rank's ``memory`` (built on the same model) a copy of rank ``src``'s:
    counters, stream hash, level states, the sliding window's rows and the attention sinks
    (e.g. after rank 0 loaded it from disk)."""
    from longnet.memory import LevelState, LocalWindowState, StreamHash

    rank, world = _rank_and_size(group)
    if world == 1:
        return
    c = memory.config
    source = dist.get_global_rank(group, src) if group is not None else src
    meta = [None]
    if rank == src:
        meta = [{"tokens": memory.tokens, "stream_offset": memory.stream_offset,
                 "hash": memory._hash.state(), "starts": memory._level_starts(),
                 "local_first": memory._window_first(), "dtype": str(memory.dtype),
                 "sinks": 0 if memory.sinks[0] is None else int(memory.sinks[0].shape[2])}]
    dist.broadcast_object_list(meta, source, group=group)
    meta = meta[0]
    dtype = getattr(torch, meta["dtype"].removeprefix("torch."))
    if rank != src:
        memory.dtype = dtype
    tensors = memory.state_dict() if rank == src else {}
    device = _comm_device(group, memory.device)
    G = c.num_heads // c.num_kv_heads
    for layer in range(c.num_layers):
        # The attention sinks: the stream's first rows, keys rotated at their positions.
        n_sinks = meta["sinks"]
        if n_sinks:
            if rank == src:
                both = torch.stack([tensors[f"layers.{layer}.sinks.k"],
                                    tensors[f"layers.{layer}.sinks.v"]]).to(device)
            else:
                both = torch.empty((2, c.num_kv_heads, n_sinks, c.head_dim), dtype=dtype,
                                   device=device)
            dist.broadcast(both, source, group=group)
            if rank != src:
                memory.sinks[layer] = both.to(memory.device)
        elif rank != src:
            memory.sinks[layer] = None
        for level, start in enumerate(meta["starts"]):
            if start is None:
                if rank != src:
                    memory.states[layer][level] = None
                continue
            r = c.dilation_rates[level]
            blocks = math.ceil((meta["tokens"] - start) / r)
            shape = (2, c.num_kv_heads, min(r, G), blocks, c.head_dim)
            if rank == src:
                both = torch.stack([tensors[f"layers.{layer}.levels.{level}.k"],
                                    tensors[f"layers.{layer}.levels.{level}.v"]]).to(device)
            else:
                both = torch.empty(shape, dtype=dtype, device=device)
            dist.broadcast(both, source, group=group)
            if rank != src:
                memory.states[layer][level] = LevelState(int(start), both.to(memory.device))
        first = meta["local_first"]
        if first is None:
            if rank != src:
                memory.local[layer] = None
            continue
        # The rows a next token can still see, keys rotated relative to the first of them
        # (what Memory.state_dict and Memory.save hold).
        rows = meta["tokens"] - int(first)
        if rank == src:
            both = torch.stack([tensors[f"layers.{layer}.local.k"],
                                tensors[f"layers.{layer}.local.v"]]).to(device)
        else:
            both = torch.empty((2, c.num_kv_heads, rows, c.head_dim), dtype=dtype, device=device)
        dist.broadcast(both, source, group=group)
        if rank != src:
            memory.local[layer] = LocalWindowState(int(first), rows, both.to(memory.device))
    if rank != src:
        memory.tokens = int(meta["tokens"])
        memory.stream_offset = int(meta["stream_offset"])
        memory._hash = StreamHash(**meta["hash"])


@dataclass
class _StateRows:
    """Where this rank's rows go in the new state of one level (one round)."""

    start: int  # the level's current segment start after the round
    first_block: int  # first block that may hold a row of this round
    blocks: int  # blocks of the state after the round
    heads: torch.Tensor  # kv head, block (from first_block), slot of each of my rows
    block: torch.Tensor
    slot: torch.Tensor
    rows: torch.Tensor  # my local row of each
    positions: torch.Tensor  # "dilated" rotary position of each: (t % w) // r


def _state_rows(layout: ShardLayout, w: int, r: int, n_q: int, n_kv: int, device) -> _StateRows | None:
    end = layout.offset + layout.total
    if end % w == 0:
        return None  # the segment just ended: the level holds nothing
    start = (end // w) * w
    first_block = (max(start, layout.offset) - start) // r
    blocks = -(-(end - start) // r)
    group = n_q // n_kv
    slots = min(r, group)
    lo, hi = max(layout.start, start), layout.end
    heads, block, slot, rows = [], [], [], []
    for g in range(n_kv):
        for c in range(slots):
            off = (g * group + c) % r
            count = _count(lo, hi, start, off, r)
            if not count:
                continue
            t = _first(lo, start, off, r) + r * np.arange(count)
            heads.append(np.full(count, g))
            slot.append(np.full(count, c))
            block.append((t - start - off) // r - first_block)
            rows.append(t - layout.start)
    cat = (lambda parts: torch.as_tensor(np.concatenate(parts) if parts else np.zeros(0, np.int64),
                                         dtype=torch.long, device=device))
    rows_t = cat(rows)
    return _StateRows(start, first_block, blocks, cat(heads), cat(block), cat(slot), rows_t,
                      ((rows_t + layout.start) % w) // r)


@torch.inference_mode()
def memory_append(memory, token_ids, *, group=None, stream_offset: int | None = None,
                  align: int | None = None, return_logits: bool = False) -> torch.Tensor | None:
    """``memory.append(token_ids)`` with the tokens split across the ranks of ``group``.

    Every rank calls it with the same ``token_ids`` and the same memory (same model,
    same state: see ``broadcast_memory``); afterwards every rank holds the state one
    process appending the same tokens would hold. Each rank runs its shard through the
    layers against the state (``prefix``) and the other ranks' rows, then the rows of
    each level's current segment are summed into place over the ranks (one all-reduce
    per call, about (tokens / r) rows per level).

    With a sliding level 0 (``config.local_window`` W) each rank's queries read the
    previous W - 1 rows from the memory's window and the earlier ranks, and the last
    W - 1 rows after the append (the new window) are summed into place the same way.
    With attention sinks (``config.attention_sinks`` S) the queries also read the sinks
    they see: those already read from ``memory.sinks``, the others from the ranks holding
    them; the sinks read in this call (the stream's first S tokens) are summed into
    ``memory.sinks`` the same way, so every rank ends with one process's sinks.

    ``return_logits``: this rank's logits ``[n, V]`` (float32) for its shard, the tokens
    at ``split_lengths(len(token_ids), world, offset=memory.tokens, align=align)``[rank]
    (the same rows ``memory.append`` returns for them); else None."""
    from longnet.memory import LevelState, StreamHash
    from longnet.model import autocast

    if memory._local_turn_start is not None or memory._isolated:
        raise RuntimeError("memory_append reads into the long-term memory, not a fork")
    ids = torch.as_tensor(token_ids, dtype=torch.long).reshape(-1)
    c = memory.config
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= c.vocab_size):
        raise ValueError(f"token ids must lie in [0, {c.vocab_size})")
    rank, world = _rank_and_size(group)
    before = memory.tokens
    window = c.local_window
    if align is None:  # cuts on level 0's segments keep it local (a window never is)
        align = c.segment_lengths[0] if c.dilation_rates[0] == 1 and not window else 1
    layout = ShardLayout(split_lengths(ids.numel(), world, offset=before, align=align), rank, before)
    local = ids[layout.start - before: layout.end - before].to(memory.device)
    positions = torch.arange(layout.start, layout.end, device=memory.device)
    plans = [None if window and level == 0 else
             _state_rows(layout, w, r, c.num_heads, c.num_kv_heads, memory.device)
             for level, (w, r) in enumerate(zip(c.segment_lengths, c.dilation_rates))]
    end = before + ids.numel()
    # The window after the append: positions [window_first, end); the new ones of them
    # from window_new on (the older ones every rank already holds).
    window_first = max(0, end - (window - 1)) if window else None
    window_new = max(before, window_first) if window else None
    # Attention sinks: positions [0, sinks); those from `before` on are read now.
    sinks = c.attention_sinks if window else 0
    new_sinks = max(0, min(sinks, end) - before)
    contributions: list[list[torch.Tensor | None]] = []

    def attend_for_layer(index):
        bias = _layer_bias(memory.model, index)
        prefix = [s if s is not None and s.start < before else None for s in memory.states[index]]
        window_prefix = _window_prefix(memory, index) if window else None
        sink_prefix = _sink_prefix(memory, index) if sinks else None

        def attend(q, k, v):
            rotary = memory.model.rotary
            if c.position_mode == "absolute":
                q, k, rotary = rotary(q, positions), rotary(k, positions), None
            out = dilated_attention(q, k, v, c.segment_lengths, c.dilation_rates, is_causal=True,
                                    group=group, rotary=rotary, level_bias=bias, layout=layout,
                                    prefix=prefix, local_window=window,
                                    window_prefix=window_prefix, attention_sinks=sinks,
                                    sink_prefix=sink_prefix)
            parts = [_contribution(plan, k[0], v[0], level, memory)
                     for level, plan in enumerate(plans)]
            if window:
                parts.append(_window_contribution(layout, window_first, window_new, k[0], v[0],
                                                  memory))
            if new_sinks:
                parts.append(_sink_contribution(layout, new_sinks, k[0], v[0], memory))
            contributions.append(parts)
            return out

        return attend

    logits = None
    with autocast(memory.device, memory.dtype):
        hidden = memory.model.run_layers(local[None], attend_for_layer, logits=False)
        if return_logits:
            logits = memory.model.lm_head(hidden)[0].float()

    dtype = next((t.dtype for layer in contributions for t in layer if t is not None), memory.dtype)
    flat = [t.to(dtype).reshape(-1) for layer in contributions for t in layer if t is not None]
    if flat and _active(group):
        buffer = torch.cat(flat)
        moved = buffer.to(_comm_device(group, buffer.device))
        dist.all_reduce(moved, group=group)
        buffer = moved.to(buffer.device)
        at, summed = 0, []
        for part in flat:
            summed.append(buffer[at: at + part.numel()])
            at += part.numel()
        summed = iter(summed)
        contributions = [[None if t is None else next(summed).view(t.shape) for t in layer]
                         for layer in contributions]

    G = c.num_heads // c.num_kv_heads
    new_states, new_windows, new_sink_rows = [], [], []
    for layer, parts in enumerate(contributions):
        if new_sinks:
            old_sinks = memory.sinks[layer]
            rows = parts[-1].to(memory.dtype)
            new_sink_rows.append(rows if old_sinks is None else torch.cat((old_sinks, rows), 2))
            parts = parts[:-1]
        if window:
            new_windows.append(_new_window(memory, layer, window_first, window_new, end,
                                           parts[-1]))
            parts = parts[:-1]
        layer_states = []
        for level, (plan, part) in enumerate(zip(plans, parts)):
            if plan is None:
                layer_states.append(None)
                continue
            r, w = c.dilation_rates[level], c.segment_lengths[level]
            slots = min(r, G)
            kv = torch.zeros((2, c.num_kv_heads, slots, plan.blocks, c.head_dim),
                             dtype=part.dtype, device=memory.device)
            old = memory.states[layer][level]
            if old is not None and old.start == plan.start and before > plan.start:
                # Rows read before this call: positions < before, as the state holds them.
                kept = min(-(-(before - plan.start) // r), old.kv.shape[3], plan.blocks)
                offsets = torch.as_tensor((np.arange(c.num_kv_heads)[:, None] * G
                                           + np.arange(slots)[None, :]) % r, device=memory.device)
                inner = offsets[:, :, None] + r * torch.arange(kept, device=memory.device)
                valid = ((plan.start + inner) < before) & (inner < w)
                kv[:, :, :, :kept] = torch.where(valid[None, ..., None],
                                                 old.kv[:, :, :, :kept].to(kv.dtype),
                                                 torch.zeros((), dtype=kv.dtype, device=kv.device))
            kv[:, :, :, plan.first_block:] += part
            layer_states.append(LevelState(plan.start, kv))
        new_states.append(layer_states)
    # Swap everything in at once: an interrupt before here leaves the previous state whole.
    hash_after = StreamHash(**memory._hash.state())
    hash_after.update(ids.tolist())
    offset_after = memory.stream_offset + ids.numel() if stream_offset is None else int(stream_offset)
    memory.states, memory._hash, memory.tokens, memory.stream_offset = \
        new_states, hash_after, before + ids.numel(), offset_after
    if window:
        memory.local = new_windows
    if new_sinks:
        memory.sinks = new_sink_rows
    return logits


def _sink_prefix(memory, layer: int):
    """The memory's sink rows of one layer for ``dilated_attention``'s ``sink_prefix``:
    ``(k, v [Hkv, n, D])``, n = ``min(attention_sinks, memory.tokens)``, or None when it
    has read nothing."""
    rows = memory.sinks[layer]
    expected = min(memory.config.attention_sinks, memory.tokens)
    if (0 if rows is None else rows.shape[2]) != expected:
        raise RuntimeError(f"the memory has read {memory.tokens} tokens but holds "
                           f"{0 if rows is None else rows.shape[2]} attention sinks, not {expected}")
    return None if rows is None else (rows[0], rows[1])


def _sink_contribution(layout: ShardLayout, new_sinks: int, k, v, memory) -> torch.Tensor:
    """This rank's rows of the sinks read in this call (positions ``layout.offset ..
    + new_sinks``), zeros elsewhere: ``[2, Hkv, new_sinks, D]``; keys as the memory stores
    them: rotated at their own position ("dilated"), or already at it ("absolute")."""
    buffer = torch.zeros((2, k.shape[0], new_sinks, k.shape[-1]), dtype=k.dtype, device=k.device)
    hi = min(layout.end, layout.offset + new_sinks)
    if layout.start < hi:
        count = hi - layout.start
        keys = k[:, :count]
        if memory.config.position_mode == "dilated":
            rotary = memory.model.rotary
            cos, sin = rotary.cos_sin(torch.arange(layout.start, hi, device=k.device))
            keys = rotary.rotate(keys, cos, sin)
        rows = slice(layout.start - layout.offset, hi - layout.offset)
        buffer[0, :, rows] = keys.to(buffer.dtype)
        buffer[1, :, rows] = v[:, :count].to(buffer.dtype)
    return buffer


def _window_prefix(memory, layer: int):
    """The memory's window rows of one layer for ``dilated_attention``'s
    ``window_prefix``: ``(k, v [Hkv, n, D], first)`` (n = 0 for an empty memory)."""
    state = memory.local[layer]
    if state is None:
        if memory.tokens:
            raise RuntimeError("the memory has read tokens but holds no sliding-window rows")
        c = memory.config
        empty = torch.zeros((c.num_kv_heads, 0, c.head_dim), dtype=memory.dtype,
                            device=memory.device)
        return empty, empty, memory.tokens
    if state.first + state.rows != memory.tokens:
        raise RuntimeError("the sliding window's rows do not end at the memory's tokens")
    return state.kv[0, :, :state.rows], state.kv[1, :, :state.rows], state.first


def _window_contribution(layout: ShardLayout, window_first: int, window_new: int, k, v,
                         memory) -> torch.Tensor:
    """This rank's rows of the new window (positions ``window_new ..`` the end), zeros
    elsewhere: ``[2, Hkv, end - window_new, D]``. Keys as the memory stores them: rotated
    at ``position - window_first`` ("dilated"), or already at their absolute position."""
    end = layout.offset + layout.total
    buffer = torch.zeros((2, k.shape[0], end - window_new, k.shape[-1]), dtype=k.dtype,
                         device=k.device)
    lo = max(layout.start, window_new)
    if lo < layout.end:
        keys = k[:, lo - layout.start:]
        if memory.config.position_mode == "dilated":
            keys = memory.model.rotary(keys, torch.arange(lo - window_first,
                                                          layout.end - window_first,
                                                          device=k.device))
        rows = slice(lo - window_new, layout.end - window_new)
        buffer[0, :, rows] = keys.to(buffer.dtype)
        buffer[1, :, rows] = v[:, lo - layout.start:].to(buffer.dtype)
    return buffer


def _new_window(memory, layer: int, window_first: int, window_new: int, end: int, part):
    """One layer's window after the append: the old rows still in it (re-rotated to the
    new first position) and the new rows summed over the ranks."""
    from longnet.memory import LocalWindowState

    if end == 0:
        return None
    c = memory.config
    kv = torch.zeros((2, c.num_kv_heads, end - window_first, c.head_dim), dtype=memory.dtype,
                     device=memory.device)
    kept = window_new - window_first
    if kept:
        old = memory.local[layer]
        rows = old.kv[:, :, window_first - old.first: window_new - old.first]
        kv[:, :, :kept] = rows
        if c.position_mode == "dilated" and old.first != window_first:
            rotary = memory.model.rotary
            cos, sin = rotary.cos_sin(torch.tensor([old.first - window_first], device=kv.device))
            kv[0, :, :kept] = rotary.rotate(rows[0], cos, sin).to(kv.dtype)
    kv[:, :, kept:] = part.to(kv.dtype)
    return LocalWindowState(window_first, end - window_first, kv)


def _contribution(plan: _StateRows | None, k, v, level: int, memory) -> torch.Tensor | None:
    """This rank's rows of one level's new state, in the state's layout (zeros elsewhere):
    ``[2, Hkv, slots, blocks - first_block, D]``. Keys as the memory stores them: rotated
    at their "dilated" position (or already at their absolute one)."""
    if plan is None:
        return None
    c = memory.config
    slots = min(c.dilation_rates[level], c.num_heads // c.num_kv_heads)
    buffer = torch.zeros((2, c.num_kv_heads, slots, plan.blocks - plan.first_block, c.head_dim),
                         dtype=k.dtype, device=k.device)
    if plan.rows.numel():
        keys = k[plan.heads, plan.rows]
        if c.position_mode == "dilated":
            keys = memory.model.rotary(keys, plan.positions)
        buffer[0, plan.heads, plan.slot, plan.block] = keys.to(buffer.dtype)
        buffer[1, plan.heads, plan.slot, plan.block] = v[plan.heads, plan.rows].to(buffer.dtype)
    return buffer
