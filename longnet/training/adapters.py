"""What training changes in the model, and what it leaves behind.

``prepare_model`` chooses what a run trains: LoRA adapters (peft) on the attention
projections plus the level gates, or every weight. ``save_adapter`` / ``load_adapter``
keep the result: the LoRA factors and gates (or all weights), merged into a freshly
loaded model at load time without importing peft.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import vault
from longnet.model import LongNetLM
from longnet.training.config import TrainConfig, TrainingError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_META = "adapter.json"
ADAPTER_FORMAT = 1
GATE_PARAMETER = "level_bias"


# --------------------------------------------------------------------------- the model


def gate_parameters(model: LongNetLM) -> dict[str, nn.Parameter]:
    """The level gates by parameter name (empty when the model has none)."""
    return {name: p for name, p in model.named_parameters()
            if name.rsplit(".", 1)[-1] == GATE_PARAMETER}


def add_lora(model: LongNetLM, rank: int, alpha: float, dropout: float = 0.0) -> LongNetLM:
    """Wrap every attention projection in a peft LoRA layer (in place). B starts at 0,
    so the model computes exactly what it did before."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(LORA_TARGETS), bias="none")
    return inject_adapter_in_model(config, model)


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA layer into its base weight and put the plain ``nn.Linear`` back,
    so the model is the original architecture again. Returns how many were merged."""
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
        merged += 1
    return merged


def prepare_model(model: LongNetLM, config: TrainConfig) -> dict[str, nn.Parameter]:
    """Make exactly the parameters this run trains require grad; returns them by name."""
    if config.full:
        for p in model.parameters():
            p.requires_grad_(True)
        if not config.train_gates:
            for p in gate_parameters(model).values():
                p.requires_grad_(False)
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        torch.manual_seed(config.seed)  # LoRA A's initialisation
        add_lora(model, config.lora_rank, config.lora_alpha, config.lora_dropout)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
        if config.train_gates:
            for p in gate_parameters(model).values():
                p.requires_grad_(True)
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters that require grad (tied weights once)."""
    state, seen = {}, set()
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            state[name] = p.detach().to("cpu", copy=True).contiguous()
    return state


# --------------------------------------------------------------------------- adapters


def save_adapter(model: nn.Module, directory, config: TrainConfig, metadata: dict) -> Path:
    """Write what training changed (LoRA factors and gates, or every weight for a full
    run) to ``directory``: ``adapter.safetensors`` then ``adapter.json`` (each via a temp
    file, fsync and rename; the json, written last, names the weights' sha256)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = trainable_state(model)
    files = vault.files_for(directory / ADAPTER_META)
    files.write_tensors(directory / ADAPTER_WEIGHTS, tensors)
    meta = {"format": ADAPTER_FORMAT, "kind": "full" if config.full else "lora",
            "lora": None if config.full else {"rank": config.lora_rank,
                                              "alpha": config.lora_alpha,
                                              "dropout": config.lora_dropout,
                                              "targets": list(LORA_TARGETS)},
            "gates": sorted(n for n in tensors if n.rsplit(".", 1)[-1] == GATE_PARAMETER),
            "adapter_sha256": files.sha256(directory / ADAPTER_WEIGHTS), **metadata}
    files.write_json(directory / ADAPTER_META, meta)
    return directory


def read_adapter_meta(directory) -> dict | None:
    path = Path(directory) / ADAPTER_META
    if not path.is_file():
        return None
    try:
        return vault.files_for(path).read_json(path)
    except (OSError, ValueError, vault.VaultError):
        return None


def load_adapter(model: LongNetLM, directory, merge: bool = True) -> dict:
    """Put a saved adapter onto ``model`` (freshly loaded base weights) in place and
    return its metadata. ``merge`` folds LoRA into the weights (plain architecture, no
    extra cost per token); otherwise the peft layers stay in the model."""
    directory = Path(directory)
    meta = read_adapter_meta(directory)
    if meta is None or meta.get("format") != ADAPTER_FORMAT:
        raise TrainingError(f"no readable adapter in {directory}")
    weights = directory / ADAPTER_WEIGHTS
    files = vault.files_for(weights)
    if not weights.is_file() or files.sha256(weights) != meta.get("adapter_sha256"):
        raise TrainingError(f"{weights} is missing or does not match {ADAPTER_META}")
    tensors = files.read_tensors(weights, device=str(model.device))
    if meta["kind"] == "lora" and merge:
        _merge_lora_tensors(model, tensors, meta["lora"], directory)
    else:
        if meta["kind"] == "lora":
            lora = meta["lora"]
            add_lora(model, lora["rank"], lora["alpha"], 0.0)
        _copy_parameters(model, tensors, directory)
    for p in model.parameters():
        p.requires_grad_(False)
    return meta


def load_adapter_as_reader(model: LongNetLM, directory) -> dict:
    """Put a saved LoRA adapter onto ``model`` as its reader (``longnet.reader``): the
    factors act only while a turn's tokens are read and the trained gates become the
    reader's gate offsets, so the memory stays the frozen model's. Returns its metadata."""
    from longnet.reader import GATE_OFFSET, READER_ADAPTER, add_reader

    directory = Path(directory)
    meta = read_adapter_meta(directory)
    if meta is None or meta.get("format") != ADAPTER_FORMAT or meta.get("kind") != "lora":
        raise TrainingError(f"no LoRA adapter in {directory}")
    weights = directory / ADAPTER_WEIGHTS
    files = vault.files_for(weights)
    if not weights.is_file() or files.sha256(weights) != meta.get("adapter_sha256"):
        raise TrainingError(f"{weights} is missing or does not match {ADAPTER_META}")
    tensors = files.read_tensors(weights, device=str(model.device))
    base_gates = {f"layers.{i}.self_attn.{GATE_PARAMETER}": layer.self_attn.level_bias.detach()
                  for i, layer in enumerate(model.layers)
                  if getattr(layer.self_attn, GATE_PARAMETER, None) is not None}
    params = add_reader(model, rank=int(meta["lora"]["rank"]), alpha=float(meta["lora"]["alpha"]))
    with torch.no_grad():
        for name, tensor in tensors.items():
            if ".lora_A." in name or ".lora_B." in name:
                prefix, rest = name.split(".lora_", 1)
                which, _, tail = rest.partition(".")
                target = f"{prefix}.lora_{which[0]}.{READER_ADAPTER}.{tail.split('.', 1)[-1]}"
            elif name in base_gates:
                target = name.replace(f"self_attn.{GATE_PARAMETER}", GATE_OFFSET)
                tensor = tensor - base_gates[name].to(tensor.device)
            else:
                raise TrainingError(f"the adapter in {directory} does not fit this model ({name})")
            if target not in params or params[target].shape != tensor.shape:
                raise TrainingError(f"the adapter in {directory} does not fit this model ({name})")
            params[target].copy_(tensor.to(params[target].dtype))
    for parameter in params.values():
        parameter.requires_grad_(False)
    return meta


def _copy_parameters(model: nn.Module, tensors: dict, directory) -> None:
    params = dict(model.named_parameters())
    unknown = sorted(set(tensors) - set(params))
    if unknown:
        raise TrainingError(f"the adapter in {directory} does not fit this model "
                            f"(unknown {unknown[:3]})")
    with torch.no_grad():
        for name, tensor in tensors.items():
            if params[name].shape != tensor.shape:
                raise TrainingError(f"the adapter's {name} has shape {tuple(tensor.shape)}, "
                                    f"the model's {tuple(params[name].shape)}")
            params[name].copy_(tensor.to(params[name].dtype))


def _merge_lora_tensors(model: nn.Module, tensors: dict, lora: dict, directory) -> None:
    """W += (alpha / r) · B A for each adapted projection, and the gates copied: what
    peft's merge computes for plain LoRA, without importing peft (~5 s) at every
    start of the assistant."""
    scale = float(lora["alpha"]) / int(lora["rank"])
    factors, others = {}, {}
    for name, tensor in tensors.items():
        if ".lora_A." in name or ".lora_B." in name:
            prefix, which = name.split(".lora_")[0], name.split(".lora_")[1][0]
            factors.setdefault(prefix, {})[which] = tensor
        else:
            others[name] = tensor
    updates = []
    for prefix, pair in sorted(factors.items()):
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            module = None
        if not isinstance(module, nn.Linear) or set(pair) != {"A", "B"}:
            raise TrainingError(f"the adapter in {directory} does not fit this model ({prefix})")
        delta = pair["B"].float() @ pair["A"].float()
        if delta.shape != module.weight.shape:
            raise TrainingError(f"the adapter's {prefix} update has shape {tuple(delta.shape)}, "
                                f"the model's weight {tuple(module.weight.shape)}")
        updates.append((module, delta))
    _copy_parameters(model, others, directory)  # checks the gates before anything changes
    with torch.no_grad():
        for module, delta in updates:
            module.weight += (scale * delta).to(module.weight.dtype)
