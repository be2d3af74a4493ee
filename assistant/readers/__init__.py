"""Readers that ship with memex: the generic reader (``generic/``), trained on synthetic
journals (``synthetic.py``) by ``scripts/train_generic_reader.py`` (README:
"The generic reader")."""

from __future__ import annotations

from pathlib import Path

GENERIC_DIR = Path(__file__).parent / "generic"


def generic_reader_dir() -> Path:
    """Where the shipped generic reader lives (``longnet.reader.save_reader``'s layout)."""
    return GENERIC_DIR
