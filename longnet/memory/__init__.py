"""The bounded memory of an ever-growing token stream, read by a LongNet model.

Why it is bounded. Segments are absolute (position t lies in segment t // w of a
level), so once a segment of a level is complete no later token attends into it at
that level. What later tokens need is, per layer and level, only the rows of the
current segment that the heads' offsets select: query head h keeps rows with
(t mod w) mod r == h mod r, so the G heads sharing a kv head need at most
min(G, r) offsets × ceil(w / r) rows. That is the whole state, whatever the
history's length; it grows by about one level each time the history doubles.

Layout. Per layer and level, keys and values are kept as ``kv [2, Hkv, slots, blocks,
D]``: block j of the current segment starts at ``start + j·r`` and slot s of kv head g
holds the row at offset ``(g·G + s) mod r`` in that block (the offsets of g's heads,
``slots = min(G, r)``). Query head h reads only slot ``(h mod G) mod slots``, and the
blocks of one slot are a dense sequence (segment length ceil(w/r)) at exactly the
sparsified indices the level gives them. So attention against the state never copies
it: new rows are written in place after the valid ones, a long chunk goes through
``level_attention`` with the slots in the batch dimension (heads of a slot as its
query heads), and a few tokens (a question, decoding) take one masked matmul per
level and one softmax over every level's keys (eq. 10 is exactly that softmax).

Generation reads the memory through ``fork()``: the fork shares the state tensors
but only ever writes rows at positions the memory has not reached, so the memory's
own state is left exactly as it was (a chat turn stays out of the long-term memory
unless asked).

Modules
-------
``state``   what is kept (``LevelState``, ``LocalWindowState``), the stream hash, and the
            file format: ``MemoryState``, the part of ``Memory`` that reports what it
            holds and saves and loads it.
``plan``    the index arithmetic of one append, worked out once for every layer.
``attend``  attention of the new tokens against the state.
``core``    ``Memory``: appending (plan, store the rows, attend), the sliding window and
            sinks, forks for a chat turn, ``generate``.
``rows``    optional, on disk: every token's keys and values as the writer made them,
            which a recall fork (``Memory.recall_fork``) reads in place of the window.
"""

from longnet.memory.core import Memory
from longnet.memory.plan import HeadGroups, LevelPlan, WindowPlan, plan_level
from longnet.memory.rows import ROWS_FILE, RowStore
from longnet.memory.state import (
    FORMAT_VERSION,
    HASH_BLOCK,
    METADATA_FILE,
    LevelState,
    LocalWindowState,
    MemoryMismatchError,
    MemoryState,
    StreamHash,
    token_stream_hash,
)

__all__ = [
    "FORMAT_VERSION",
    "HASH_BLOCK",
    "METADATA_FILE",
    "ROWS_FILE",
    "HeadGroups",
    "LevelPlan",
    "LevelState",
    "LocalWindowState",
    "Memory",
    "MemoryMismatchError",
    "MemoryState",
    "RowStore",
    "StreamHash",
    "WindowPlan",
    "plan_level",
    "token_stream_hash",
]
