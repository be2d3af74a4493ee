"""``LongNetConfig`` and the level schedules: what a LongNet model is (no torch here).

The levels (``level_schedule`` for the paper's absolute segments, ``sliding_schedule``
for a sliding window followed by far levels), the gate constants (``SHUT_GATE``,
``CLOSED_GATE``) and the fields a pretrained model loads with (``pretrained_defaults``).
``longnet.model`` re-exports all of it: callers have long imported these names from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

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
