"""Who sends which rows to whom: the plans of the sharded attention, worked out with
identical arithmetic on every rank, so that all agree without talking.

``_plan_level``: per far level, the segments that cross ranks, the exchange among their
ranks and the compact rows each head offset reads. ``_plan_window``: the rows a sliding
level 0 reads from earlier ranks. ``_plan_sinks``: who holds and who reads the
attention sinks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from longnet.distributed.process import ShardLayout

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
