"""Reading and parsing files, with no database: ``prepare_file`` reads, hashes, parses
and cuts one file into dated entries and chunks; ``prepare_files`` does a group of them
and, given a tokenizer, tokenizes every chunk and entry header too. Pure functions, so
worker processes can run them (see ``workers``)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.chunking import chunk_spans
from ingest.dates import assign_entries
from ingest.pipeline.scan import FileInfo, TransientSkip, read_stable
from ingest.pipeline.tokens import _encode_sliced
from ingest.readers import reader_for
from ingest.readers.base import SkipFile
from ingest.store import Source
from ingest.stream.tokenizing import encode_flat


@dataclass
class _PreparedEntry:
    """One entry of a parsed file, cut into chunks (and tokenized when read by a worker)."""
    ordinal: int
    date: str | None
    date_rule: str | None
    title: str | None
    tags: str | None
    text: str
    spans: list[tuple[int, int]]
    header: str = ""  # what the stream puts before it (see entry_header)
    tokens: tuple[np.ndarray, np.ndarray] | None = None  # (ids, ids per chunk)
    header_tokens: np.ndarray | None = None


def _label(source: Source, relpath: str) -> str:
    return f"{source.root.name}/{relpath}"


def entry_header(date: str | None, label: str) -> str:
    """The short header each entry starts with in the stream."""
    return f"# {date or 'undated'} · {label}\n\n"


def prepare_file(job: tuple) -> tuple:
    """Read, hash, parse and chunk one file. Pure: no database. ``job`` is (path,
    relpath, size, mtime_ns, format, max_file_bytes, sha256 already stored or None: a
    file with those bytes is not parsed, label for the entry headers). Returns
    ("gone",) | ("skip", FileInfo, reason) | ("read", FileInfo, sha256, parsed) where
    parsed is None (known bytes), a SkipFile, or ((warnings, encoding, title), entries)."""
    path, relpath, size, mtime_ns, file_format, max_file_bytes, known_sha, label = job
    info = FileInfo(relpath, size, mtime_ns, file_format)
    try:
        data, st = read_stable(Path(path), max_file_bytes)
    except FileNotFoundError:
        return ("gone",)
    except SkipFile as exc:
        transient = isinstance(exc, TransientSkip)
        info = FileInfo(relpath, None if transient else size, None if transient else mtime_ns,
                        file_format)
        return ("skip", info, str(exc))
    info = FileInfo(relpath, st.st_size, st.st_mtime_ns, file_format)
    sha = hashlib.sha256(data).hexdigest()
    if known_sha == sha:
        return ("read", info, sha, None)
    parsed = _parse(info, data)
    if isinstance(parsed, SkipFile):
        return ("read", info, sha, parsed)
    result, entries = parsed
    prepared = []
    for ordinal, entry in enumerate(entries):
        text = entry.text.strip("\n").rstrip() + "\n\n"
        if not text.strip():
            continue
        date = entry.date.isoformat() if entry.date else None
        prepared.append(_PreparedEntry(
            ordinal, date, entry.date_rule, entry.title,
            json.dumps(entry.tags) if entry.tags else None, text, chunk_spans(text),
            entry_header(date, label)))
    summary = ("; ".join(result.warnings) or None, result.encoding, result.title)
    return ("read", info, sha, (summary, prepared))


def prepare_files(jobs: list[tuple], tokenizer=None) -> list[tuple]:
    """``prepare_file`` for each job, and (with ``tokenizer``) every entry's chunks and
    header tokenized, all in a few large encodes (each text alone, as the stream has it)."""
    outcomes = [prepare_file(job) for job in jobs]
    if tokenizer is None:
        return outcomes
    entries = [entry for outcome in outcomes if outcome[0] == "read"
               and isinstance(outcome[3], tuple) for entry in outcome[3][1]]
    texts = [entry.text[start:end] for entry in entries for start, end in entry.spans]
    ids, per_chunk = _encode_sliced(tokenizer, texts)
    bounds = np.concatenate([[0], np.cumsum(per_chunk)])
    first = 0  # chunk index
    for entry in entries:
        count = len(entry.spans)
        entry.tokens = (ids[bounds[first]:bounds[first + count]].copy(),
                        per_chunk[first:first + count].copy())
        first += count
    header_ids, header_lengths = encode_flat(tokenizer, [e.header for e in entries],
                                             unique=True)
    header_ends = np.cumsum(header_lengths)
    for entry, end, length in zip(entries, header_ends.tolist(), header_lengths.tolist()):
        entry.header_tokens = header_ids[end - length:end].copy()
    return outcomes


def _parse(info: FileInfo, data: bytes):
    reader = reader_for(info.relpath)
    try:
        if not data.strip():
            raise SkipFile("empty file")
        result = reader.read(data, info.relpath)
        entries = assign_entries(result, info.relpath, info.mtime_ns or time.time_ns())
        if not entries:
            raise SkipFile("no text")
    except SkipFile as exc:
        return exc
    except RecursionError:
        return SkipFile("file too deeply nested to parse")
    except Exception as exc:  # a reader bug or a pathological file must not stop the run
        return SkipFile(f"could not parse ({type(exc).__name__}: {str(exc)[:160]})")
    return result, entries
