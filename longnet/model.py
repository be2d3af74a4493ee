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
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from longnet.attention import dilated_attention

POSITION_MODES = ("absolute", "dilated")
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
MAX_HISTORY_TOKENS = 1 << 30  # the default level schedule reaches ~1B tokens


def level_schedule(max_tokens: int = MAX_HISTORY_TOKENS, local_window: int = 2048,
                   alpha: int = 2) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Segment lengths and dilation rates w_i = w0·α^i, r_i = α^i, up to ``max_tokens``.

    Level 0 is dense (r = 1). Levels are added until one segment covers ``max_tokens``.
    Every row keeps w/r = w0 keys per level, so the memory grows by one level each
    time the history grows α-fold.
    """
    if local_window < 1 or alpha < 2 or max_tokens < 1:
        raise ValueError("level_schedule needs local_window >= 1, alpha >= 2, max_tokens >= 1")
    segments, rates = [local_window], [1]
    while segments[-1] < max_tokens:
        segments.append(segments[-1] * alpha)
        rates.append(rates[-1] * alpha)
    return tuple(segments), tuple(rates)


_DEFAULT_SEGMENTS, _DEFAULT_RATES = level_schedule()

PRETRAINED_WINDOW_CAP = 8192  # the sliding window of a pretrained model: its context, at most this
FAR_LEVEL_KEYS = 2048  # rows each far level keeps per segment (w / r) in the sliding schedule
SHUT_GATE = -1e4  # exp(-1e4) is 0 in every float type: the level takes no part
CLOSED_GATE = -8.0  # initial bias of the far levels of a pretrained model: exp(-8) ≈ 3e-4
PRETRAINED_SINKS = 4  # attention sinks of a pretrained model (one already does most of it)


def sliding_schedule(window: int, max_tokens: int = MAX_HISTORY_TOKENS,
                     far_keys: int = FAR_LEVEL_KEYS, alpha: int = 2,
                     far_start: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Levels for a model whose level 0 is a sliding window of ``window`` tokens
    (``LongNetConfig.local_window``): level 0 is ``(window, 1)``, then far levels
    ``w = far_start·α^j`` (default ``far_start = 2·window``) with ``r = w / far_keys``,
    so each far level keeps ``far_keys`` rows per segment, until one segment covers
    ``max_tokens``. The far levels reach past the window; they are what a pretrained
    model learns to read in training.
    """
    if window < 1 or far_keys < 1 or alpha < 2:
        raise ValueError("sliding_schedule needs window >= 1, far_keys >= 1, alpha >= 2")
    segments, rates = [window], [1]
    w = far_start or 2 * window
    while segments[-1] < max_tokens:
        segments.append(w)
        rates.append(max(1, w // far_keys))
        w *= alpha
    return tuple(segments), tuple(rates)


@dataclass
class LongNetConfig:
    vocab_size: int = 49152
    hidden_size: int = 576
    num_layers: int = 30
    num_heads: int = 9
    num_kv_heads: int = 3
    intermediate_size: int = 1536
    segment_lengths: tuple[int, ...] = _DEFAULT_SEGMENTS
    dilation_rates: tuple[int, ...] = _DEFAULT_RATES
    head_dim: int | None = None  # default hidden_size // num_heads
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # None, {"rope_type": "linear"|"llama3", ...}
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    attention_bias: bool = False  # q/k/v biases (Qwen2)
    max_position_embeddings: int = 8192  # the context the weights were trained on
    position_mode: str = "dilated"
    # Level 0 as a dense sliding window of this many tokens (None: absolute segments).
    local_window: int | None = None
    # With local_window: the stream's first tokens stay visible to every later token
    # (attention sinks, placed just before the window), as pretrained models expect.
    attention_sinks: int = 0
    level_gates: bool = False  # a learnable bias per (layer, head, level) on each level's lse
    far_gate_init: float = 0.0  # initial gate bias of levels 1.. (0 = the paper's eq. 10)
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self):
        self.segment_lengths = tuple(int(w) for w in self.segment_lengths)
        self.dilation_rates = tuple(int(r) for r in self.dilation_rates)
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_heads
        problems = []
        if len(self.segment_lengths) != len(self.dilation_rates) or not self.segment_lengths:
            problems.append("segment_lengths and dilation_rates need the same, non-zero length")
        if any(w < 1 for w in self.segment_lengths) or any(r < 1 for r in self.dilation_rates):
            problems.append("segment lengths and dilation rates must be >= 1")
        if self.num_heads % self.num_kv_heads:
            problems.append(f"num_heads ({self.num_heads}) must be a multiple of "
                            f"num_kv_heads ({self.num_kv_heads})")
        if self.position_mode not in POSITION_MODES:
            problems.append(f"position_mode must be one of {POSITION_MODES}, "
                            f"not {self.position_mode!r}")
        if self.local_window is not None:
            self.local_window = int(self.local_window)
            if self.local_window < 1:
                problems.append("local_window must be >= 1 (or None for absolute segments)")
            if self.dilation_rates and self.dilation_rates[0] != 1:
                problems.append("a sliding local_window replaces a dense level 0: "
                                "dilation_rates[0] must be 1")
        if self.attention_sinks < 0 or (self.attention_sinks and self.local_window is None):
            problems.append("attention_sinks must be >= 0 and need a local_window")
        if self.head_dim % 2:
            problems.append("head_dim must be even for rotary positions")
        if problems:
            raise ValueError("invalid LongNetConfig: " + "; ".join(problems))

    @property
    def num_levels(self) -> int:
        return len(self.segment_lengths)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["segment_lengths"] = list(self.segment_lengths)
        data["dilation_rates"] = list(self.dilation_rates)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LongNetConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_hf(cls, hf: dict, **overrides) -> LongNetConfig:
        """Translate a Hugging Face ``config.json`` of the Llama/Qwen2/Mistral family."""
        model_type = hf.get("model_type", "llama")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model type {model_type!r}: LongNetLM loads "
                             f"{', '.join(SUPPORTED_MODEL_TYPES)} models")
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        rope_theta = hf.get("rope_theta", rope.pop("rope_theta", 10000.0))
        rope.pop("rope_theta", None)
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        values = {
            "vocab_size": hf["vocab_size"],
            "hidden_size": hf["hidden_size"],
            "num_layers": hf["num_hidden_layers"],
            "num_heads": hf["num_attention_heads"],
            "num_kv_heads": hf.get("num_key_value_heads") or hf["num_attention_heads"],
            "intermediate_size": hf["intermediate_size"],
            "head_dim": hf.get("head_dim"),
            "rope_theta": float(rope_theta),
            "rope_scaling": None if rope_type == "default" else rope,
            "rms_norm_eps": hf.get("rms_norm_eps", 1e-6),
            "tie_word_embeddings": hf.get("tie_word_embeddings", False),
            "attention_bias": hf.get("attention_bias", model_type == "qwen2"),
            "max_position_embeddings": hf.get("max_position_embeddings", 8192),
            "bos_token_id": hf.get("bos_token_id"),
            "eos_token_id": hf.get("eos_token_id"),
        }
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported activation {hf.get('hidden_act')!r} (SwiGLU needs silu)")
        values.update(overrides)
        return cls(**values)


# --------------------------------------------------------------------------- device


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA when present, else the CPU."""
    if device not in (None, "auto"):
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(dtype: str | torch.dtype | None = None,
                 device: str | torch.device | None = None) -> torch.dtype:
    """The compute dtype: given, else bfloat16 on a CUDA card that has it, else float32.

    bfloat16 on CPU is available (autocast) but not the default: on CPUs without
    native bf16 instructions it is not faster and loses precision.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in (None, "auto"):
        if dtype not in names:
            raise ValueError(f"unknown dtype {dtype!r}: use one of {sorted(names)} or 'auto'")
        return names[dtype]
    device = choose_device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """bfloat16/float16 autocast on ``device``; a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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
        biases = [layer.self_attn.level_bias for layer in self.layers
                  if getattr(layer.self_attn, "level_bias", None) is not None]
        saved = [bias.detach().clone() for bias in biases]
        try:
            with torch.no_grad():
                for bias in biases:
                    bias[:, 1:] = SHUT_GATE
            yield self
        finally:
            with torch.no_grad():
                for bias, value in zip(biases, saved):
                    bias.copy_(value)

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


def pretrained_defaults(hf_config: dict, overrides: dict) -> dict:
    """The config fields a pretrained model loads with, then ``overrides`` on top.

    Without a level schedule of the caller's: the sliding window of its trained context
    and closed far gates. A caller who gives ``segment_lengths``/``dilation_rates``
    gets exactly the paper's levels (absolute segments, no gates) unless they also ask
    for ``local_window``/``level_gates``."""
    if "segment_lengths" in overrides or "dilation_rates" in overrides:
        return dict(overrides)
    context = min(int(hf_config.get("max_position_embeddings") or PRETRAINED_WINDOW_CAP),
                  PRETRAINED_WINDOW_CAP)
    sinks = int(overrides.get("attention_sinks", PRETRAINED_SINKS))
    # The window and its sinks together span the trained context: no distance is new.
    window = int(overrides.get("local_window") or max(1, context - sinks))
    segments, rates = sliding_schedule(window, far_start=2 * context)
    values = {"local_window": window, "attention_sinks": sinks, "segment_lengths": segments,
              "dilation_rates": rates, "level_gates": True, "far_gate_init": CLOSED_GATE}
    values.update(overrides)
    return values


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / name for name in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    return files


__all__ = [
    "CLOSED_GATE",
    "POSITION_MODES",
    "LongNetConfig",
    "LongNetLM",
    "autocast",
    "choose_device",
    "choose_dtype",
    "level_schedule",
    "sliding_schedule",
]
