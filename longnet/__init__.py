"""LongNet: dilated attention (Ding et al. 2023, arXiv 2307.02486), a LongNet language
model and its bounded memory of an ever-growing token stream.

Names are imported lazily so that ``import longnet`` stays cheap and each part can
be used on its own.
"""

from importlib import import_module

_EXPORTS = {
    "dilated_attention": "longnet.attention",
    "DilatedAttention": "longnet.attention",
    "LongNetConfig": "longnet.model",
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
