"""The LongNet language model: a Llama-style decoder whose every attention layer is
dilated attention (Ding et al. 2023, arXiv 2307.02486).

One small file in the spirit of nanoGPT: RMSNorm, rotary positions, grouped-query
attention through ``longnet.attention.dilated_attention``, SwiGLU MLP. Weights load
directly from a local Hugging Face folder of the Llama / Qwen2 / Mistral family (or
a GGUF, converted once by ``longnet.weights``), so a pretrained dense model becomes
a LongNet model by changing only how its attention looks at the past.

Positions. RoPE models were trained on distances up to their context (8192 for
SmolLM2). Two ways to place the rotary positions:
- ``"absolute"``: RoPE at the true token positions before dilation (the official
  LongNet code); far levels then show the model distances it never saw.
- ``"dilated"``: inside each level a row's position is its index in the level's
  sparsified segment, so distances stay below w/r (like position interpolation).

The bounded memory of a stream (``model.memory()``) lives in ``longnet.memory``.
The configuration (``LongNetConfig``, the level schedules, the gate constants) lives in
``longnet.config`` and the device choice in ``longnet.device``; both are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from longnet.attention import dilated_attention
from longnet.config import (
    CLOSED_GATE,
    FAR_LEVEL_KEYS,
    MAX_HISTORY_TOKENS,
    POSITION_MODES,
    PRETRAINED_SINKS,
    PRETRAINED_WINDOW_CAP,
    SHUT_GATE,
    SUPPORTED_MODEL_TYPES,
    LongNetConfig,
    level_schedule,
    pretrained_defaults,
    sliding_schedule,
)
from longnet.device import autocast, choose_device, choose_dtype

# --------------------------------------------------------------------------- layers


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half layout, as Llama checkpoints expect)."""

    def __init__(self, config: LongNetConfig):
        super().__init__()
        dim = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", _scaled_inv_freq(inv_freq, config.rope_scaling),
                             persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate ``x [..., T, D]`` by ``positions`` (``[T]`` or broadcastable to x[..., T])."""
        cos, sin = self.cos_sin(positions)
        return self.rotate(x, cos, sin)

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions.to(torch.float32)[..., None] * self.inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def _scaled_inv_freq(inv_freq: torch.Tensor, scaling: dict | None) -> torch.Tensor:
    if not scaling:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return inv_freq / float(scaling["factor"])
    if kind == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_context = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        smooth = (old_context / wavelen - low) / (high - low)
        scaled = torch.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
        middle = (wavelen <= old_context / low) & (wavelen >= old_context / high)
        blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        return torch.where(middle, blended, scaled)
    raise ValueError(f"unsupported rope scaling {kind!r} (supported: linear, llama3)")


class Linear(nn.Linear):
    """``nn.Linear`` that, while the model decodes (``LongNetLM.packed_decoding``), reads a
    packed copy of its weight for a one-row input (``longnet.packed``)."""

    packed = None  # a PackedLinear, set only inside packed_decoding

    def forward(self, x):
        if self.packed is not None and x.numel() == x.shape[-1]:
            return self.packed(x)
        return F.linear(x, self.weight, self.bias)


class Attention(nn.Module):
    def __init__(self, config: LongNetConfig):
        super().__init__()
        self.config = config
        hd, bias = config.head_dim, config.attention_bias
        self.q_proj = Linear(config.hidden_size, config.num_heads * hd, bias=bias)
        self.k_proj = Linear(config.hidden_size, config.num_kv_heads * hd, bias=bias)
        self.v_proj = Linear(config.hidden_size, config.num_kv_heads * hd, bias=bias)
        self.o_proj = Linear(config.num_heads * hd, config.hidden_size, bias=False)
        # Added to each level's log-sum-exp before mixing; 0 is exactly the paper's eq. 10.
        self.level_bias = (nn.Parameter(initial_level_bias(config))
                           if config.level_gates else None)

    def project(self, x):
        """q ``[B, Hq, T, D]``, k and v ``[B, Hkv, T, D]`` (not yet rotated)."""
        B, T, _ = x.shape
        c = self.config
        q = self.q_proj(x).view(B, T, c.num_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, c.num_kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.num_kv_heads, c.head_dim).transpose(1, 2)
        return q, k, v

    def output(self, attended):
        B, H, T, D = attended.shape
        return self.o_proj(attended.transpose(1, 2).reshape(B, T, H * D))


def initial_level_bias(config: LongNetConfig) -> torch.Tensor:
    """Gate biases ``[heads, levels]`` a model starts with: level 0 open (0), the far
    levels at ``far_gate_init`` (strongly negative for a pretrained model, so it first
    behaves as its dense window does and training opens them)."""
    bias = torch.zeros(config.num_heads, config.num_levels)
    bias[:, 1:] = config.far_gate_init
    return bias


class MLP(nn.Module):
    def __init__(self, config: LongNetConfig):
        super().__init__()
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: LongNetConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, attend):
        """``attend(q, k, v) -> [B, Hq, T, D]`` decides what the rows look at."""
        q, k, v = self.self_attn.project(self.input_layernorm(x))
        x = x + self.self_attn.output(attend(q, k, v))
        return x + self.mlp(self.post_attention_layernorm(x))


# --------------------------------------------------------------------------- model


class LongNetLM(nn.Module):
    def __init__(self, config: LongNetConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.rotary = Rotary(config)
        self.model_id = "random-init"
        self._weights_hash: str | None = None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    # -- running

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, V]`` for token ids ``[B, T]`` (positions 0..T-1)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.run_layers(input_ids, self.dilated_attend(positions))

    def run_layers(self, input_ids, attend_for_layer, logits: bool = True):
        """Embeddings → blocks → norm (→ lm_head). ``attend_for_layer(i)`` gives layer i's
        attention function; the memory plugs its stateful attention in here."""
        x = self.embed_tokens(input_ids)
        for index, block in enumerate(self.layers):
            x = block(x, attend_for_layer(index))
        x = self.norm(x)
        return self.lm_head(x) if logits else x

    def dilated_attend(self, positions: torch.Tensor):
        """Per-layer attention over one whole sequence that starts at position 0."""
        c = self.config
        rotary = self.rotary if c.position_mode == "dilated" else None

        def attend_for_layer(index):
            level_bias = self.layers[index].self_attn.level_bias

            def attend(q, k, v):
                if c.position_mode == "absolute":
                    q, k = self.rotary(q, positions), self.rotary(k, positions)
                return dilated_attention(q, k, v, c.segment_lengths, c.dilation_rates,
                                         is_causal=True, rotary=rotary, level_bias=level_bias,
                                         local_window=c.local_window,
                                         attention_sinks=c.attention_sinks)

            return attend

        return attend_for_layer

    def memory(self, dtype=None, chunk_size: int = 4096):
        """A new, empty bounded memory of a token stream read by this model (compute dtype
        chosen by ``choose_dtype`` unless given)."""
        from longnet.memory import Memory

        return Memory(self, dtype=dtype, chunk_size=chunk_size)

    def projections(self) -> list[Linear]:
        """Every projection (attention, MLP, lm head), in module order: what decoding packs."""
        return [module for module in self.modules() if isinstance(module, Linear)]

    def pack_for_decoding(self, kind: str = "int4") -> list:
        """Make (or reuse) the packed weight copies ``packed_decoding(kind)`` reads; one
        ``PackedLinear`` per projection. Thread-safe: a warm-up thread may pack while the
        caller gets on with other work."""
        from longnet.packed import (
            DECODE_WEIGHTS,
            PACK_LOCK,
            PackedLinear,
            cache_file,
            load_copies,
            save_copies,
            weights_key,
        )
        from longnet.weights import CONVERSION_MARKER

        if kind not in DECODE_WEIGHTS:
            raise ValueError(f"decode weights must be one of {DECODE_WEIGHTS}, not {kind!r}")
        linears = self.projections()
        if kind == "float32" or self.device.type != "cpu" or not linears:
            return []

        with PACK_LOCK:
            key = weights_key([module.weight for module in linears])
            cache = self.__dict__.setdefault("_packed", {})  # kind -> (weights key, copies)
            if kind in cache and cache[kind][0] == key:
                return cache[kind][1]
            # A folder memex converted, weights as loaded: the copies are kept there.
            folder = getattr(self, "model_dir", None)
            kept = None
            if folder is not None and key == getattr(self, "_loaded_key", None) and \
                    (Path(folder) / CONVERSION_MARKER).is_file():
                kept = cache_file(folder, kind)
            copies = load_copies(kept, self.weights_hash, linears) if kept else None
            if copies is None:
                with torch.no_grad():
                    copies = [PackedLinear(m.weight, m.bias, kind) for m in linears]
                if kept is not None:
                    save_copies(kept, self.weights_hash, kind, copies)
            cache[kind] = (key, copies)
            return copies

    @contextlib.contextmanager
    def packed_decoding(self, kind: str = "int4"):
        """Within this block a one-row input to any projection reads a packed copy of its
        weight (``longnet.packed``: ``"int4"``, ``"float16"`` or ``"float32"`` = none):
        decoding reads every weight once per token, so fewer bytes are faster. Copies are
        made on first use (``pack_for_decoding``) and kept until a weight changes. A
        CPU-only measure: elsewhere, and for float32, nothing changes."""
        copies = self.pack_for_decoding(kind)
        linears = self.projections()
        if not copies:
            yield self
            return
        try:
            for module, copy in zip(linears, copies):
                module.packed = copy
            yield self
        finally:
            for module in linears:
                module.packed = None

    @contextlib.contextmanager
    def far_levels_shut(self):
        """Within this block the far levels take no part (their gates at ``SHUT_GATE``);
        the gates are put back after. For reading a turn with untrained far levels: their
        gates at ``CLOSED_GATE`` are nearly closed against a full 8K window, but against
        a turn's short window of its own the thousands of far rows still add up (measured:
        they changed 55 of 114 answers of the example questions)."""
        with self.far_gates_at(SHUT_GATE):
            yield self

    @contextlib.contextmanager
    def far_gates_at(self, value: float):
        """Within this block every far level's gate is ``value`` (0: the paper's eq. 10,
        ``SHUT_GATE``: no part); the gates are put back after."""
        biases = [layer.self_attn.level_bias for layer in self.layers
                  if getattr(layer.self_attn, "level_bias", None) is not None]
        saved = [bias.detach().clone() for bias in biases]
        try:
            with torch.no_grad():
                for bias in biases:
                    bias[:, 1:] = value
            yield self
        finally:
            with torch.no_grad():
                for bias, value_before in zip(biases, saved):
                    bias.copy_(value_before)

    # -- identity

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def weights_hash(self) -> str:
        """Fingerprint of the weights (from the model folder, else hashed from the tensors)."""
        if self._weights_hash is None:
            import hashlib

            digest = hashlib.sha256()
            for name, tensor in sorted(self.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
            self._weights_hash = digest.hexdigest()
        return self._weights_hash

    # -- loading

    @classmethod
    def from_pretrained(cls, name_or_path=None, cache_dir=None, device=None,
                        **overrides) -> LongNetLM:
        """Load Llama/Qwen2/Mistral weights: the default model, a local HF folder or a .gguf.

        A pretrained model gets, unless ``overrides`` say otherwise: level 0 as a sliding
        window of its trained context (capped at 8,192 tokens) less 4 attention sinks (the
        stream's first tokens, kept in view), far levels from ``sliding_schedule``, and
        level gates with the far levels nearly closed
        (``CLOSED_GATE``), so that before training it reads its recent past exactly as
        the dense model does and the far levels barely count. ``overrides`` replace
        config fields (e.g. ``segment_lengths``, ``position_mode``, ``local_window=None``
        for the paper's absolute segments, ``far_gate_init=0.0``). Weights stay float32;
        run in bfloat16 through ``autocast``.
        """
        from safetensors import safe_open

        from longnet.weights import resolve_model_dir, weights_fingerprint

        folder = resolve_model_dir(name_or_path, cache_dir)
        hf_config = json.loads((folder / "config.json").read_text())
        config = LongNetConfig.from_hf(hf_config, **pretrained_defaults(hf_config, overrides))
        files = _safetensors_files(folder)
        with torch.device("meta"):
            model = cls(config)
        state = {}
        for path in files:
            with safe_open(path, framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    state[key.removeprefix("model.")] = handle.get_tensor(key).float()
        if config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        for index in range(config.num_layers if config.level_gates else 0):
            state.setdefault(f"layers.{index}.self_attn.level_bias", initial_level_bias(config))
        expected = set(model.state_dict())
        if config.tie_word_embeddings:
            expected.discard("lm_head.weight")
        missing = expected - set(state)
        unexpected = {k for k in set(state) - expected if "rotary_emb" not in k}
        if missing or unexpected:
            raise ValueError(f"weights in {folder} do not fit a {config.num_layers}-layer "
                             f"LongNetLM: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
        model.load_state_dict({k: state[k] for k in expected}, strict=False, assign=True)
        if config.tie_word_embeddings:
            model.lm_head.weight = model.embed_tokens.weight
        model.rotary = Rotary(config)  # its buffer was built on the meta device
        model.model_id = str(name_or_path or "smollm2-135m-instruct")
        model._weights_hash = weights_fingerprint(folder)
        model.model_dir = folder
        model = model.to(choose_device(device)).eval()
        from longnet.packed import weights_key

        # The weights as loaded: packed decode copies of these may be kept on disk.
        model._loaded_key = weights_key([m.weight for m in model.projections()])
        return model


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / name for name in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    return files


# The names of longnet.config and longnet.device are re-exported: callers import them
# from longnet.model.
__all__ = [
    "CLOSED_GATE",
    "FAR_LEVEL_KEYS",
    "MAX_HISTORY_TOKENS",
    "POSITION_MODES",
    "PRETRAINED_SINKS",
    "PRETRAINED_WINDOW_CAP",
    "SHUT_GATE",
    "SUPPORTED_MODEL_TYPES",
    "LongNetConfig",
    "LongNetLM",
    "autocast",
    "choose_device",
    "choose_dtype",
    "level_schedule",
    "pretrained_defaults",
    "sliding_schedule",
]
