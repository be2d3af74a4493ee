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

Modules
-------
``process``    joining the process group, shard bookkeeping (``ShardLayout``,
               ``shard_layout``, ``split_lengths``).
``plan``       who sends which rows to whom, per level, for the sliding window and sinks.
``exchange``   selecting rows, the point-to-point exchange, ``record_communication``.
``attention``  the sharded ``dilated_attention`` and its autograd node.
``training``   a sequence-parallel forward and training step for ``LongNetLM``
               (``sharded_forward``, ``sequence_parallel_loss``, ``train_step``).
``memory``     a sequence-parallel memory build (``memory_append``, ``broadcast_memory``)
               that leaves every rank with exactly the state one process reading the same
               stream builds.
``train``      the torchrun launcher: ``torchrun -m longnet.distributed.train``.
"""

from longnet.distributed.attention import dilated_attention
from longnet.distributed.exchange import record_communication
from longnet.distributed.memory import broadcast_memory, broadcast_tokens, memory_append
from longnet.distributed.process import (
    ShardLayout,
    init_distributed,
    loopback_interface,
    shard_layout,
    split_lengths,
)
from longnet.distributed.training import (
    all_reduce_gradients,
    next_token_shard,
    sequence_parallel_loss,
    sharded_forward,
    train_step,
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
