"""What a memory keeps, and its file format.

Per layer, ``LevelState`` holds a level's rows of its current segment and
``LocalWindowState`` the sliding window's rows; ``StreamHash`` names the tokens read.
``MemoryState`` is the part of ``Memory`` (``longnet.memory.core``) that reports what it
holds (``nbytes``, ``state_dict``) and writes and reads it: ``memory.json`` naming one
safetensors file, replaced atomically (``save``, ``load``, ``FORMAT_VERSION``). The
fsync helpers serve training's checkpoints too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import vault
from longnet.memory.plan import _slot_offsets
from longnet.memory.rows import RowStore

FORMAT_VERSION = 2  # 2: the sliding local window's rows (local_first, layers.N.local.k/v)
METADATA_FILE = "memory.json"
HASH_BLOCK = 1024  # tokens per block of the stream hash chain


class MemoryMismatchError(ValueError):
    """A saved memory was made by another model or configuration, or is damaged."""


# --------------------------------------------------------------------------- stream hash


class StreamHash:
    """SHA-256 chain over fixed blocks of token ids: the same digest however the
    stream was cut into appends, and resumable from a few hundred bytes of state."""

    def __init__(self, chain: str | None = None, tail: list[int] | None = None):
        self.chain = bytes.fromhex(chain) if chain else b"\0" * 32
        self.tail = list(tail or [])

    def update(self, token_ids) -> None:
        self.tail.extend(int(t) for t in token_ids)
        while len(self.tail) >= HASH_BLOCK:
            block = np.asarray(self.tail[:HASH_BLOCK], dtype="<i8").tobytes()
            self.chain = hashlib.sha256(self.chain + block).digest()
            del self.tail[:HASH_BLOCK]

    def hexdigest(self) -> str:
        tail = np.asarray(self.tail, dtype="<i8").tobytes()
        return hashlib.sha256(self.chain + tail).hexdigest()

    def state(self) -> dict:
        return {"chain": self.chain.hex(), "tail": list(self.tail)}


def token_stream_hash(token_ids) -> str:
    """The ``stream_hash`` a memory that consumed exactly ``token_ids`` records."""
    digest = StreamHash()
    digest.update(token_ids)
    return digest.hexdigest()


# --------------------------------------------------------------------------- levels


@dataclass
class LevelState:
    """One layer's keys and values for one level: ``kv [2, Hkv, slots, blocks, D]``,
    rows of the segment starting at ``start`` (block j of slot s of kv head g holds
    position ``start + j·r + (g·G + s) mod r``)."""

    start: int
    kv: torch.Tensor


@dataclass
class LocalWindowState:
    """One layer's sliding local window: ``kv [2, Hkv, capacity, D]`` whose first
    ``rows`` rows hold positions ``first, first + 1, ...`` (the memory's most recent
    tokens). Keys are stored rotated at ``position - first`` in "dilated" position mode
    (rotary is relative, so an origin near the rows keeps the angles precise) and at
    their absolute positions in "absolute" mode. Rows past ``rows`` are free: a fork
    writes there without touching what the memory holds."""

    first: int
    rows: int
    kv: torch.Tensor


# --------------------------------------------------------------------------- what is held and saved


class MemoryState:
    """The part of ``Memory`` about what it holds and how it is saved: sizes, the rows by
    name (``state_dict``), ``metadata``, ``save`` and ``load``."""

    # -- what is held

    @property
    def nbytes(self) -> int:
        """Bytes held by the state tensors."""
        levels = sum(s.kv.numel() * s.kv.element_size()
                     for layer in self.states for s in layer if s is not None)
        window = sum(s.kv.numel() * s.kv.element_size() for s in self.local if s is not None)
        return levels + window + sum(t.numel() * t.element_size() for t in self.sinks
                                     if t is not None)

    @property
    def stream_hash(self) -> str:
        return self._hash.hexdigest()

    def valid_blocks(self, level: int, start: int) -> int:
        return math.ceil((self.tokens - start) / self.config.dilation_rates[level])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state's rows ``[Hkv, slots, blocks, D]`` by layer and level, rows that hold
        no position of the stream (yet) zeroed."""
        c = self.config
        G = c.num_heads // c.num_kv_heads
        result = {}
        for layer, layer_states in enumerate(self.states):
            for level, state in enumerate(layer_states):
                if state is None:
                    continue
                r, w = c.dilation_rates[level], c.segment_lengths[level]
                blocks = self.valid_blocks(level, state.start)
                offsets = torch.as_tensor(_slot_offsets(r, G, c.num_kv_heads), device=self.device)
                inner = offsets[:, :, None] + r * torch.arange(blocks, device=self.device)
                valid = (state.start + inner) < self.tokens
                if self._local_turn_start is None or level:
                    valid &= inner < w
                rows = torch.where(valid[None, ..., None], state.kv[:, :, :, :blocks],
                                   torch.zeros((), dtype=state.kv.dtype, device=self.device))
                result[f"layers.{layer}.levels.{level}.k"] = rows[0].contiguous()
                result[f"layers.{layer}.levels.{level}.v"] = rows[1].contiguous()
        for layer, window in enumerate(self.local):
            if window is None:
                continue
            k, v = self._window_rows(window)
            result[f"layers.{layer}.local.k"] = k
            result[f"layers.{layer}.local.v"] = v
        for layer, rows in enumerate(self.sinks):
            if rows is not None:
                result[f"layers.{layer}.sinks.k"] = rows[0].contiguous()
                result[f"layers.{layer}.sinks.v"] = rows[1].contiguous()
        return result

    def _window_rows(self, window: LocalWindowState) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows a next token can still see (the last ``local_window - 1``), keys
        rotated relative to the first of them: ``k, v [Hkv, n, D]``."""
        skip = max(0, window.rows - (self.config.local_window - 1))
        k = window.kv[0, :, skip:window.rows]
        v = window.kv[1, :, skip:window.rows]
        if skip and self.config.position_mode == "dilated":
            cos, sin = self.model.rotary.cos_sin(torch.tensor([-skip], device=self.device))
            k = self.model.rotary.rotate(k, cos, sin).to(window.kv.dtype)
        return k.contiguous(), v.contiguous()

    def _window_first(self) -> int | None:
        window = next((s for s in self.local if s is not None), None)
        if window is None:
            return None
        return window.first + max(0, window.rows - (self.config.local_window - 1))

    # -- persistence

    def metadata(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "tokens": self.tokens,
            "model_id": self.model.model_id,
            "weights_hash": self.model.weights_hash,
            "config": self.config.to_dict(),
            "stream_offset": self.stream_offset,
            "stream_hash": self.stream_hash,
            "stream_hash_state": self._hash.state(),
            "dtype": str(self.dtype).removeprefix("torch."),
            "nbytes": self.nbytes,
            "level_starts": self._level_starts(),
            "local_first": self._window_first(),
        }

    def _level_starts(self) -> list[int | None]:
        starts = [self._state_start(level, False) for level in range(self.config.num_levels)]
        if self.config.local_window:
            starts[0] = None  # the sliding level's rows are saved apart ("local_first")
        return starts

    def save(self, directory, stored_dtype: torch.dtype | None = None) -> Path:
        """Write the memory to ``directory`` atomically, its rows in 16 bits (half the
        bytes of float32; ``stored_dtype`` overrides, float32 for the old, larger files).

        The tensors go to a new uniquely named file, are fsynced, and then
        ``memory.json`` (which names that file) is replaced with a temp-file + fsync +
        rename. A crash at any point leaves the previous save intact and loadable.
        """
        from safetensors.torch import save_file

        if self._local_turn_start is not None or self._isolated:
            raise RuntimeError("a fork holds a chat turn, not the long-term memory: "
                               "save the memory it was forked from")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"state-{self.tokens}-{secrets.token_hex(4)}.safetensors"
        temp = directory / f".{name}.tmp"
        tensors = {k: _stored(v.cpu(), stored_dtype) for k, v in self.state_dict().items()}
        meta = self.metadata()
        meta["state_file"] = name
        meta["stored_dtypes"] = sorted({str(t.dtype).removeprefix("torch.")
                                        for t in tensors.values()})
        rows = getattr(self, "rows", None)
        if rows is not None and rows.path.parent.resolve() == directory.resolve() \
                and rows.end == self.tokens:
            rows.flush()  # the rows of every token the state holds are on disk first
            meta["rows"] = {"file": rows.path.name, "start": rows.start, "end": self.tokens}
        files = vault.files_for(directory / METADATA_FILE)
        if files.encrypted:  # tensor by tensor into authenticated chunks
            files.write_tensors(temp, tensors, {"format_version": str(FORMAT_VERSION)})
        else:
            save_file(tensors, str(temp), metadata={"format_version": str(FORMAT_VERSION)})
            _fsync_file(temp)
        meta["stored_bytes"] = temp.stat().st_size
        os.replace(temp, directory / name)
        files.write_json(directory / METADATA_FILE, meta)  # (atomic, the folder fsynced)
        for old in directory.glob("state-*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        return directory

    @classmethod
    def load(cls, directory, model, dtype: str | torch.dtype | None = None) -> MemoryState:
        """Load a saved memory for ``model``; refuses one made by another model or config."""
        directory = Path(directory)
        meta_path = directory / METADATA_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"no saved memory in {directory} (no {METADATA_FILE})")
        files = vault.files_for(meta_path)
        try:
            meta = files.read_json(meta_path)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise MemoryMismatchError(f"{meta_path} is damaged: {error}") from error
        if meta.get("format_version") != FORMAT_VERSION:
            raise MemoryMismatchError(
                f"{directory} holds memory format {meta.get('format_version')!r}; this "
                f"version reads format {FORMAT_VERSION}: rebuild the memory")
        if meta.get("weights_hash") != model.weights_hash:
            raise MemoryMismatchError(
                f"the memory in {directory} was built by model {meta.get('model_id')!r} "
                f"(weights {str(meta.get('weights_hash'))[:12]}), not by the loaded model "
                f"{model.model_id!r} (weights {model.weights_hash[:12]}): rebuild it or "
                f"load the model it was made with")
        saved_config = meta.get("config", {})
        current = model.config.to_dict()
        differing = sorted(k for k in set(saved_config) | set(current)
                           if saved_config.get(k) != current.get(k))
        if differing:
            raise MemoryMismatchError(
                f"the memory in {directory} was built with another model configuration "
                f"(different {', '.join(differing)}): rebuild it or load it with that "
                f"configuration")
        memory = cls(model, dtype=dtype or meta.get("dtype"))
        memory.tokens = int(meta["tokens"])
        memory.stream_offset = int(meta["stream_offset"])
        memory._hash = StreamHash(**meta["stream_hash_state"])
        if memory._hash.hexdigest() != meta["stream_hash"]:
            raise MemoryMismatchError(f"{meta_path} is inconsistent (stream hash)")
        state_path = directory / meta["state_file"]
        if not state_path.is_file():
            raise MemoryMismatchError(f"{state_path} named by {meta_path} is missing")
        tensors = files.read_tensors(state_path, device=str(memory.device))

        def read(prefix: str, expected: tuple) -> torch.Tensor:
            """``kv [2, ...]`` from ``<prefix>.k`` and ``.v``, refused unless ``expected``."""
            try:
                k, v = tensors[f"{prefix}.k"], tensors[f"{prefix}.v"]
            except KeyError as error:
                raise MemoryMismatchError(f"{state_path} lacks {error}") from error
            if tuple(k.shape) != expected or tuple(v.shape) != expected:
                raise MemoryMismatchError(f"{state_path}: {prefix} has shape "
                                          f"{tuple(k.shape)}, expected {expected}")
            return torch.stack((k, v)).to(memory.dtype)

        c = memory.config
        G = c.num_heads // c.num_kv_heads
        for level, start in enumerate(meta["level_starts"]):
            if start is None:
                continue
            blocks = memory.valid_blocks(level, start)
            slots = min(c.dilation_rates[level], G)
            expected = (c.num_kv_heads, slots, blocks, c.head_dim)
            for layer in range(c.num_layers):
                kv = read(f"layers.{layer}.levels.{level}", expected)
                memory.states[layer][level] = LevelState(start, kv)
        local_first = meta.get("local_first")
        if c.local_window and memory.tokens:
            if local_first is None:
                raise MemoryMismatchError(f"{meta_path} lacks the sliding window's rows")
            rows = memory.tokens - int(local_first)
            expected = (c.num_kv_heads, rows, c.head_dim)
            for layer in range(c.num_layers):
                kv = read(f"layers.{layer}.local", expected)
                memory.local[layer] = LocalWindowState(int(local_first), rows, kv)
        n_sinks = min(c.attention_sinks, memory.tokens) if c.local_window else 0
        for layer in range(c.num_layers if n_sinks else 0):
            memory.sinks[layer] = read(f"layers.{layer}.sinks",
                                       (c.num_kv_heads, n_sinks, c.head_dim))
        saved_rows = meta.get("rows")
        if saved_rows and (directory / saved_rows["file"]).is_file():
            rows = RowStore(directory / saved_rows["file"], c.num_layers, c.num_kv_heads,
                            c.head_dim, start=int(saved_rows["start"]))
            if rows.end >= memory.tokens:  # rows written after the save are read again
                rows.truncate(memory.tokens)
                memory.rows = rows
        return memory


# float16 keeps 3 more bits of each row than bfloat16, and every key and value of
# SmolLM2's layers lies far inside its range; a tensor that does not is kept in bfloat16.
_FLOAT16_MAX = 60_000.0


def _stored(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A state tensor as saved: a bfloat16 state as it is, float32 as float16 (or
    bfloat16 where its values exceed float16's range), unless ``dtype`` says otherwise."""
    if dtype is not None:
        return tensor.to(dtype)
    if tensor.dtype in (torch.bfloat16, torch.float16) or not tensor.is_floating_point():
        return tensor
    if tensor.numel() and float(tensor.abs().max()) > _FLOAT16_MAX:
        return tensor.to(torch.bfloat16)
    return tensor.to(torch.float16)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
