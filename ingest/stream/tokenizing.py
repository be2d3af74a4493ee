"""Text to token ids, the way the stream holds them: a tokenizer's identity (name and a
hash of its definition, recorded in the stream's header), the plain-text copy of a fast
tokenizer that reads special-token strings as text, and ``encode_batch`` /
``encode_flat`` (through the word cache of ``word_cache`` when the tokenizer allows)."""

from __future__ import annotations

import hashlib
import json
from itertools import chain
from pathlib import Path

import numpy as np

from ingest.stream.file import TOKEN_DTYPE
from ingest.stream.word_cache import _word_cache_encoder


def tokenizer_identity(tokenizer) -> tuple[str, str]:
    """(id, sha256) of a tokenizer: its name and a hash of its full definition."""
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    name = Path(name).name or name
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "to_str"):
        backend = tokenizer  # a bare `tokenizers.Tokenizer`
    if backend is not None:
        definition = backend.to_str()
    else:  # a slow tokenizer: its vocabulary is what decides the ids
        definition = json.dumps(sorted(tokenizer.get_vocab().items()))
    return name, hashlib.sha256(definition.encode("utf-8")).hexdigest()


_plain_text_tokenizers: dict[int, tuple[object, object]] = {}


def _plain_text_copy(backend):
    """A private copy of a `tokenizers.Tokenizer` that reads special-token strings
    (``<|im_end|>`` typed in a note) as plain text: a document must not be able to
    put control tokens into the stream. The caller's tokenizer is left as it is."""
    cached = _plain_text_tokenizers.get(id(backend))
    if cached is None or cached[0] is not backend:
        from tokenizers import Tokenizer

        copy = Tokenizer.from_str(backend.to_str())
        copy.encode_special_tokens = True
        cached = _plain_text_tokenizers[id(backend)] = (backend, copy)
    return cached[1]


def _plain_backend(tokenizer):
    """The `tokenizers.Tokenizer` to encode with (a plain-text copy), or None for a slow one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "encode_batch"):
        backend = tokenizer
    if backend is not None and hasattr(backend, "encode_special_tokens"):
        return _plain_text_copy(backend)
    return backend


def encode_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text as plain text (no special tokens added or recognised)."""
    if not texts:
        return []
    backend = _plain_backend(tokenizer)
    if backend is None:
        return [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    flat, lengths = encode_flat(tokenizer, texts)
    ends = np.cumsum(lengths)
    return [flat[end - length:end].tolist() for end, length in zip(ends, lengths)]


def encode_flat(tokenizer, texts: list[str], *, unique: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """(all token ids one after another as uint32, tokens per text): the same ids as
    ``encode_batch``, in the shape the stream writes, without a list per text.
    ``unique=True`` for texts unlike any other (entry headers with their paths): cached
    by the pattern's words, which recur, not by whole space-cut pieces, which would not."""
    if not texts:
        return np.zeros(0, dtype=TOKEN_DTYPE), np.zeros(0, dtype=np.int64)
    backend = _plain_backend(tokenizer)
    if backend is None:
        encoded = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    else:
        fast = _word_cache_encoder(backend)
        if fast is not None:
            return fast.encode_flat(texts, unique)
        encoded = [enc.ids for enc in backend.encode_batch(texts, add_special_tokens=False)]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    flat = np.fromiter(chain.from_iterable(encoded), dtype=TOKEN_DTYPE, count=int(lengths.sum()))
    return flat, lengths
