"""Moving rows between ranks: selecting a plan's rows of this rank's k and v (views
where possible), sending and receiving every non-local level's rows in one
``batch_isend_irecv``, reading rows out of the received buffers or out of a memory's
state, and counting the bytes received (``record_communication``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from longnet.distributed.plan import _Exchange, _LevelPlan, _OffsetPlan

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
