"""LongNet: dilated attention (Ding et al. 2023, arXiv 2307.02486), a LongNet language
model and its bounded memory of an ever-growing token stream.

Names are imported lazily so that ``import longnet`` stays cheap and each part can
be used on its own.

Layout, from the bottom up:

- ``config`` (``LongNetConfig``, level schedules) and ``device`` (device, dtype, autocast);
- ``attention/``: dilated attention, the sliding window, the Hugging Face drop-in;
- ``model``: ``LongNetLM``, loading pretrained weights; ``packed`` and ``weights``
  (packed decode weights, model folders and tokenizers);
- ``memory/``: the bounded memory of a token stream; ``generate``: answering through it;
- ``training/``: fine-tuning on one long stream, adapters;
- ``distributed/``: sequence parallelism (attention, training, memory build, launcher).
"""

from importlib import import_module

_EXPORTS = {
    "dilated_attention": "longnet.attention",
    "DilatedAttention": "longnet.attention",
    "LongNetConfig": "longnet.config",
    "LongNetLM": "longnet.model",
    "Memory": "longnet.memory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'longnet' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
