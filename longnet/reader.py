"""The reader: what learns to read a memory that the frozen model wrote.

LongMem's split (Wang et al., "Augmenting Language Models with Long-Term Memory", 2023):
the backbone writes the memory once and never changes; a small adapter learns to read it.
Here the adapter is a peft LoRA on every attention and MLP projection plus, with level
gates, an offset per (layer, head, level) added to the gates. It is active only while a
turn's own tokens are read (a ``Memory.fork``: the question and the answer as they attend
to the memory); every token of the history is written with the base weights. So training
the reader never makes a built memory stale ("memory staleness", the flaw of Memorizing
Transformers), and a memory built before, during or after training is the same bytes.

A reader knows which writer it learned against (``writer_identity``: the base weights'
digest and the LongNet configuration) and is refused by any other.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import vault

READER_ADAPTER = "reader"  # the peft adapter's name
READER_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
READER_WEIGHTS = "reader.safetensors"
READER_META = "reader.json"
READER_FORMAT = 1
GATE_OFFSET = "gate_offset"  # name of a layer's [heads, levels] offset in the saved file


class ReaderError(ValueError):
    """A reader that cannot be used with this model (another writer, a damaged file)."""


@dataclass
class ReaderState:
    """What ``add_reader`` puts on a model (``model.reader``)."""

    rank: int
    alpha: float
    gate_offsets: nn.ParameterList | None
    active: bool = False
    meta: dict = field(default_factory=dict)  # what it was trained on, when loaded


def writer_identity(model) -> dict:
    """Who wrote a memory: the base weights' digest and the LongNet configuration."""
    return {"weights_hash": model.weights_hash, "config": model.config.to_dict()}


def add_reader(model, rank: int = 8, alpha: float = 16.0) -> dict[str, nn.Parameter]:
    """Put an untrained reader on ``model`` (in place): LoRA factors whose B is 0 and gate
    offsets of 0, so the model reads exactly as before. Every other weight is frozen.
    Returns the reader's parameters by name (what an optimizer trains)."""
    from peft import LoraConfig, inject_adapter_in_model

    if getattr(model, "reader", None) is not None:
        raise ReaderError("this model has a reader already")
    weights_hash = model.weights_hash  # the base weights' digest, before any wrapping
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0,
                        target_modules=list(READER_TARGETS), bias="none")
    inject_adapter_in_model(config, model, adapter_name=READER_ADAPTER)
    offsets = None
    if model.config.level_gates:
        offsets = nn.ParameterList(
            nn.Parameter(torch.zeros_like(layer.self_attn.level_bias)) for layer in model.layers)
    model._weights_hash = weights_hash
    model.reader = ReaderState(rank=rank, alpha=float(alpha), gate_offsets=offsets)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    params = reader_parameters(model)
    for parameter in params.values():
        parameter.requires_grad_(True)
    _set_lora(model, False)
    return params


def reader_parameters(model) -> dict[str, nn.Parameter]:
    """The reader's LoRA factors and gate offsets by name."""
    params = {name: p for name, p in model.named_parameters()
              if f"lora_A.{READER_ADAPTER}" in name or f"lora_B.{READER_ADAPTER}" in name}
    reader = getattr(model, "reader", None)
    if reader is not None and reader.gate_offsets is not None:
        for index, offset in enumerate(reader.gate_offsets):
            params[f"layers.{index}.{GATE_OFFSET}"] = offset
    return params


def _set_lora(model, active: bool) -> None:
    from peft.tuners.lora import LoraLayer

    reader = getattr(model, "reader", None)
    layers = getattr(reader, "_lora_layers", None)
    if layers is None:  # found once per reader: a walk over every module costs ~9 ms a turn
        layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
        if reader is not None:
            reader._lora_layers = layers
    for module in layers:
        # peft's switch (enable_adapters) also flips requires_grad; the flag alone
        # keeps the reader's parameters trainable while the writer runs
        module._disable_adapters = not active


@contextlib.contextmanager
def reading_turn(model, active: bool = True):
    """Within this block the reader (if the model has one) is on when ``active``: the
    tokens run are a turn's, reading the memory. Off, the model is the frozen writer."""
    reader = getattr(model, "reader", None)
    if reader is None or reader.active == active:
        yield model
        return
    _set_lora(model, active)
    reader.active = active
    try:
        yield model
    finally:
        _set_lora(model, not active)
        reader.active = not active


def gate_offset(model, layer: int) -> torch.Tensor | None:
    """The reader's offset to layer ``layer``'s level gates while it reads a turn."""
    reader = getattr(model, "reader", None)
    if reader is None or not reader.active or reader.gate_offsets is None:
        return None
    return reader.gate_offsets[layer]


def far_gates_learned(model) -> bool:
    """Whether the model's reader moved any far level's gate: only then may a turn read the
    far levels (a reader that learned from recalled rows alone, which are read with the far
    levels shut, leaves its offsets at 0, and untrained far levels only blur a turn)."""
    reader = getattr(model, "reader", None)
    if reader is None or reader.gate_offsets is None:
        return False
    return any(bool((offset.detach()[:, 1:] != 0).any()) for offset in reader.gate_offsets)


def save_reader(model, directory, metadata: dict | None = None) -> Path:
    """Write the reader's parameters and what it was trained against (atomically: a temp
    file, fsync, rename; the metadata last, naming the weights' digest)."""
    reader = getattr(model, "reader", None)
    if reader is None:
        raise ReaderError("this model has no reader to save")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().cpu().contiguous() for name, p in reader_parameters(model).items()}
    files = vault.files_for(directory / READER_META)
    files.write_tensors(directory / READER_WEIGHTS, tensors)
    meta = {"format": READER_FORMAT, "rank": reader.rank, "alpha": reader.alpha,
            "writer": writer_identity(model),
            "sha256": files.sha256(directory / READER_WEIGHTS), **(metadata or {})}
    files.write_json(directory / READER_META, meta)
    return directory / READER_META


def read_reader_meta(directory) -> dict | None:
    path = Path(directory) / READER_META
    try:
        return vault.files_for(path).read_json(path)
    except (OSError, ValueError, vault.VaultError):
        return None


def load_reader(model, directory) -> dict:
    """Put the reader saved in ``directory`` on ``model``; its metadata. A reader trained
    against another writer (other base weights or LongNet configuration) is refused."""
    meta = read_reader_meta(directory)
    if meta is None or meta.get("format") != READER_FORMAT:
        raise ReaderError(f"no reader in {directory}")
    writer = writer_identity(model)
    trained_for = meta.get("writer", {})
    if trained_for.get("weights_hash") != writer["weights_hash"]:
        raise ReaderError(
            f"the reader in {directory} learned to read memories written by other weights "
            f"({str(trained_for.get('weights_hash'))[:12]}; this model is "
            f"{writer['weights_hash'][:12]}): train it again for this model")
    if trained_for.get("config") != writer["config"]:
        raise ReaderError(f"the reader in {directory} learned to read memories of another "
                          "LongNet configuration (levels, positions or gates): train it again")
    path = Path(directory) / READER_WEIGHTS
    files = vault.files_for(path)
    if not path.is_file() or files.sha256(path) != meta.get("sha256"):
        raise ReaderError(f"{path} does not match its metadata (damaged or half-written)")
    tensors = files.read_tensors(path)
    params = add_reader(model, rank=int(meta["rank"]), alpha=float(meta["alpha"]))
    if set(tensors) != set(params):
        raise ReaderError(f"{path} holds other parameters than this model's reader")
    with torch.no_grad():
        for name, parameter in params.items():
            parameter.copy_(tensors[name].to(parameter.dtype))
    for parameter in params.values():
        parameter.requires_grad_(False)
    model.reader.meta = meta
    return meta
