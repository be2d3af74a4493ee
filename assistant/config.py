"""Settings in ``<home>/config.toml``: ``memex config show`` / ``memex config set KEY VALUE``.

Only the keys below exist; values are checked when set, so a typo is an error at
``set`` time rather than a surprise at answer time.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import tomli_w
import tomllib

CONFIG_NAME = "config.toml"
MODES = ("hybrid", "memory", "retrieval", "dense")


@dataclass
class Setting:
    key: str
    help: str
    choices: tuple[str, ...] | None = None


SETTINGS = {
    "model": Setting("model", "model name (smollm2-135m-instruct), a .gguf file or a local HF folder"),
    "device": Setting("device", "where the model runs", ("auto", "cpu", "cuda")),
    "dtype": Setting("dtype", "numeric type of the model", ("auto", "float32", "bfloat16")),
    "positions": Setting("positions", "LongNet position mode (auto = the library default)",
                         ("auto", "absolute", "dilated")),
    "levels": Setting("levels", "LongNet level schedule: 'auto' or segment:rate pairs, "
                                "e.g. '2048:1,4096:2,8192:4'"),
    "mode": Setting("mode", "default answer mode", MODES),
    "passages": Setting("passages", "retrieved passages read per question"),
    "sentences": Setting("sentences", "sentences of those passages put in the prompt"),
    "max_new_tokens": Setting("max_new_tokens", "longest answer, in tokens"),
    "temperature": Setting("temperature", "sampling temperature (0 = greedy)"),
    "top_p": Setting("top_p", "nucleus sampling threshold (used when temperature > 0)"),
    "embeddings": Setting("embeddings", "use embeddings in retrieval (true/false)"),
    "answer_stems": Setting("answer_stems", "start an answer with the question's own words, "
                                            "for the model to finish (true/false; off: on real "
                                            "diaries they read as broken English)"),
    "grounded": Setting("grounded", "a short answer's words, numbers and names must come from "
                                    "its quotes or the question (true/false)"),
    "decode_weights": Setting("decode_weights", "weights each new answer token reads on a CPU: "
                                                "int4 (fastest), float16, float32 (exact)",
                              ("int4", "float16", "float32")),
    "today": Setting("today", "date that 'last week' is relative to (empty = the real today)"),
    "reader": Setting("reader", "which reader reads the memory in answers: auto (the best "
                                "there is), trained (`memex train`'s; refused when there is "
                                "none), generic (the one memex ships, trained on synthetic "
                                "journals), none (the base model)",
                      ("auto", "trained", "generic", "none")),
    "server": Setting("server", "keep the model loaded in a background process between "
                                "`memex ask` and `memex reflect` commands, so the next answer "
                                "starts at once (true/false)"),
    "server_idle_minutes": Setting("server_idle_minutes", "minutes the background process "
                                                          "waits for a question before it "
                                                          "exits"),
    "build_dtype": Setting("build_dtype", "numeric type the memory build computes in: auto "
                                          "(bfloat16 where the CPU has AVX512-BF16 or AMX, or "
                                          "on a GPU; else float32), float32, bfloat16",
                           ("auto", "float32", "bfloat16")),
    "memory_rows": Setting("memory_rows", "keep every token's keys and values on disk as the "
                                          "memory reads them (23 KB a token with the bundled "
                                          "model), so memory answers read the rows of the "
                                          "passages search finds (true/false)"),
    "persona": Setting("persona", "the tone of answers and reflections: plain, coach (asks one "
                                  "question back), partner (warm), tutor (points out a pattern), "
                                  "or your own words; never the facts"),
}


@dataclass
class Config:
    model: str = "smollm2-135m-instruct"
    device: str = "auto"
    dtype: str = "auto"
    positions: str = "auto"
    levels: str = "auto"
    mode: str = "hybrid"
    passages: int = 8
    sentences: int = 4
    max_new_tokens: int = 48
    temperature: float = 0.0
    top_p: float = 0.9
    embeddings: bool = True
    answer_stems: bool = False
    grounded: bool = True
    decode_weights: str = "int4"
    persona: str = "plain"
    today: str = ""
    reader: str = "auto"
    memory_rows: bool = True
    build_dtype: str = "auto"
    server: bool = True
    server_idle_minutes: int = 15

    def as_dict(self) -> dict:
        return asdict(self)


class ConfigError(ValueError):
    pass


def config_path(home: Path | str) -> Path:
    return Path(home) / CONFIG_NAME


def _coerce(key: str, raw) -> object:
    """A value for ``key`` from a string (the CLI) or a TOML value, checked."""
    kind = {f.name: f.type for f in fields(Config)}[key]
    text = str(raw).strip()
    try:
        if kind == "int":
            value = int(text)
            if value < 1:
                raise ConfigError(f"{key} must be at least 1")
        elif kind == "float":
            value = float(text)
            if value < 0:
                raise ConfigError(f"{key} must not be negative")
        elif kind == "bool":
            if isinstance(raw, bool):
                value = raw
            elif text.lower() in ("1", "true", "yes", "on"):
                value = True
            elif text.lower() in ("0", "false", "no", "off"):
                value = False
            else:
                raise ConfigError(f"{key} must be true or false, not {text!r}")
        else:
            value = text
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{key} must be a {kind}, not {text!r}") from None
    setting = SETTINGS[key]
    if setting.choices and value not in setting.choices:
        raise ConfigError(f"{key} must be one of {', '.join(setting.choices)}, not {text!r}")
    if key == "levels" and value != "auto":
        parse_levels(value)
    if key == "persona" and not (0 < len(value) <= 300):
        raise ConfigError("persona must be plain, coach, partner, tutor or a text of at most "
                          "300 characters")
    if key == "today" and value:
        from datetime import date

        try:
            date.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"today must be an ISO date (YYYY-MM-DD) or empty, not {text!r}") from None
    return value


def model_overrides(config) -> dict:
    """The LongNetLM.from_pretrained overrides the settings ask for ("auto": none)."""
    overrides = {}
    if config.positions != "auto":
        overrides["position_mode"] = config.positions
    if config.levels != "auto":
        segments, rates = parse_levels(config.levels)
        overrides.update(segment_lengths=segments, dilation_rates=rates)
    return overrides


def parse_levels(text: str) -> tuple[list[int], list[int]]:
    """'2048:1,4096:2' → ([2048, 4096], [1, 2])."""
    segments, rates = [], []
    try:
        for part in text.split(","):
            segment, rate = part.split(":")
            segments.append(int(segment))
            rates.append(int(rate))
    except ValueError:
        raise ConfigError(f"levels must look like '2048:1,4096:2', not {text!r}") from None
    if not segments or any(s < 1 or r < 1 or s % r for s, r in zip(segments, rates)):
        raise ConfigError("levels: each segment length must be divisible by its dilation rate")
    return segments, rates


def load_config(home: Path | str) -> Config:
    path = config_path(home)
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    config = Config()
    for key, raw in data.items():
        if key not in SETTINGS:
            continue  # a key from a newer memex: leave it in the file, ignore it here
        setattr(config, key, _coerce(key, raw))
    return config


def set_value(home: Path | str, key: str, raw: str) -> Config:
    """Check and store one setting; returns the updated config."""
    if key not in SETTINGS:
        raise ConfigError(f"unknown setting {key!r}; known: {', '.join(SETTINGS)}")
    value = _coerce(key, raw)
    path = config_path(home)
    data = {}
    if path.exists():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    data[key] = value
    _write_atomic(path, tomli_w.dumps(data))
    return load_config(home)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
