"""Scan → diff → ingest: bring the store in line with the source folders.

Three resumable phases, each made of small transactions:

1. **scan/diff/read**: walk the sources, compare with the store by (size, mtime)
   and then sha256; read new and changed files, split them into dated entries
   and chunks (status ``pending``; searchable at once). Moves and renames with the
   same content update the path only. Files gone from disk are marked deleted.
   Reading, parsing, chunking and tokenizing are pure (``prepare_files``); on a large
   run worker processes do them while this process writes SQLite, and the chunks'
   token ids wait for phase 2 in an unnamed temporary file (``PreTokens``).
2. **stream**: append pending entries (oldest date first) to the token stream, from
   those ids or tokenized from the stored text; the spans table records which
   tokens came from where.
3. **embed**: compute embeddings for chunks that have none (optional).

Killed at any point, a rerun picks up where the last committed step ended.

The modules, in the order a run uses them:

* ``sources``: registering sources (``add_source``) and ``locate``;
* ``runner``: ``run``, the phases one after another;
* phase 1: ``sync`` (its loop), ``scan`` (walking folders, reading files safely),
  ``diff`` (what changed), ``extract`` (reading and parsing, pure), ``workers`` (the
  worker processes), ``commit`` (the rows written for each batch);
* phase 2: ``append`` (entries appended to the stream);
* phase 3: ``ingest.embeddings.embed_missing``;
* shared: ``report`` (``IngestReport``), ``tokens`` (ids kept between phases 1 and 2),
  ``checkpoint`` (the log copied from a thread), ``heap`` (the process's memory).
"""

from ingest.pipeline.report import IngestReport
from ingest.pipeline.runner import run
from ingest.pipeline.sources import add_source, locate

__all__ = ["IngestReport", "add_source", "locate", "run"]
