"""Hybrid search over current chunks: FTS5 BM25 fused with embeddings (RRF).

The person's text never reaches FTS5 ``MATCH`` as syntax: it is cut into words,
each word is quoted as an FTS5 string, and the words are OR-ed (BM25 ranks
chunks holding more and rarer words first). Quotes, dashes, ``AND``/``OR``/
``NEAR`` and ``col:`` are plain words here. With an embedder and stored vectors,
the cosine ranking is fused with BM25 by reciprocal rank fusion; without them
search is FTS alone. A third ranking reads what describes an entry rather than its
text: its title, front-matter tags and file path ("notes/proposal.md" answers
"when did I propose?" even when the text never says "propose").
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np

RRF_K = 60
PERIOD_WEIGHT = 2.0  # weight of the period ranking in the fusion (see search)
CANDIDATES = 50
# MiniLM cosine below this is unrelated text (measured: unrelated pairs 0.0-0.15,
# related 0.3-0.6); such neighbours are not offered as matches.
MIN_SIMILARITY = 0.2
VECTOR_PAGE = 20000

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "did", "didn't", "tell", "show", "find"])


@dataclass
class SearchResult:
    path: str            # relative to its source root
    root: str            # the source root (absolute)
    date: str | None     # the entry's date, ISO
    snippet: str
    text: str            # the whole chunk
    score: float
    document_id: int
    chunk_id: int
    entry_id: int
    title: str | None = None
    fts_rank: int | None = None
    vector_rank: int | None = None
    similarity: float | None = None  # cosine with the query, when embeddings were used
    date_rule: str | None = None     # how the date was found; "mtime": the file's time only

    def as_json(self) -> dict:
        return {"path": self.path, "date": self.date, "date_rule": self.date_rule,
                "snippet": self.snippet, "score": round(self.score, 6), "root": self.root}

    def as_dict(self) -> dict:
        return asdict(self)


def query_terms(text: str) -> list[str]:
    words = [w.lower() for w in _WORD.findall(text or "")]
    content = [w for w in words if w not in STOPWORDS]
    terms = content or words
    seen: dict[str, None] = {}
    for word in terms:
        seen.setdefault(word, None)
    return list(seen)[:32]


def fts_query(text: str) -> str | None:
    """A safe FTS5 MATCH expression for free text (None when it has no words)."""
    terms = query_terms(text)
    if not terms:
        return None
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def mentions(store, phrase: str) -> int:
    """How many live chunks hold ``phrase`` (its words in a row, as FTS5 tokenises them)."""
    words = [w.lower() for w in _WORD.findall(phrase or "")]
    if not words:
        return 0
    expression = '"' + " ".join(words).replace('"', '""') + '"'
    row = store.db.execute(
        "SELECT count(*) FROM chunks_fts CROSS JOIN chunks c ON c.id = chunks_fts.rowid "
        "WHERE chunks_fts MATCH ? AND c.status IN ('live', 'pending')", [expression]).fetchone()
    return int(row[0])


def entries_mentioning(store, phrase: str, since=None, until=None) -> list:
    """Current entries dated within [since, until] with a chunk holding ``phrase`` (its
    words in a row, as FTS5 tokenises and stems them), oldest first: what "how many times
    did I write about …" counts."""
    words = [w.lower() for w in _WORD.findall(phrase or "")]
    if not words:
        return []
    expression = '"' + " ".join(words).replace('"', '""') + '"'
    clause, params = _date_clause(since, until, column="e.date")
    rows = store.db.execute(
        "SELECT DISTINCT c.entry_id, e.date FROM chunks_fts CROSS JOIN chunks c "
        "ON c.id = chunks_fts.rowid CROSS JOIN entries e ON e.id = c.entry_id "
        f"WHERE chunks_fts MATCH ? AND e.status IN ('live', 'pending'){clause} "
        "ORDER BY e.date, c.entry_id", [expression, *params]).fetchall()
    entries = (store.entry(entry_id) for entry_id, _ in rows)
    return [entry for entry in entries if entry is not None]


def document_frequencies(store, words) -> tuple[dict[str, int], int]:
    """In how many live-or-not chunks each word occurs (FTS5's own vocabulary), and how many
    chunks there are: how common a word is for this writer."""
    db = store.db
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_vocab USING fts5vocab(main, "
               "chunks_fts, 'row')")
    wanted = sorted({w.lower() for w in words})
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        part = wanted[start:start + 500]
        marks = ",".join("?" * len(part))
        for term, count in db.execute(
                f"SELECT term, doc FROM temp.chunks_vocab WHERE term IN ({marks})", part):
            found[term] = int(count)
    total = int(db.execute("SELECT count(*) FROM chunks").fetchone()[0])
    return found, total


def _date_clause(since, until, column: str = "c.date") -> tuple[str, list]:
    clause, params = "", []
    if since:
        clause += f" AND {column} >= ?"
        params.append(_iso(since))
    if until:
        clause += f" AND {column} <= ?"
        params.append(_iso(until))
    return clause, params


def _iso(value) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10]


# The full-text matches drive every join below (CROSS JOIN keeps them the outer loop):
# newer SQLite planners (3.51, as SQLCipher bundles it) otherwise start from the chunks'
# status index and run the MATCH once per live chunk, 100× slower on a journal.


def fts_ranking(store, query: str, since=None, until=None, limit: int = CANDIDATES) -> list[int]:
    expression = fts_query(query)
    if expression is None:
        return []
    clause, params = _date_clause(since, until)
    rows = store.db.execute(
        "SELECT c.id FROM chunks_fts CROSS JOIN chunks c ON c.id = chunks_fts.rowid "
        f"WHERE chunks_fts MATCH ? AND c.status IN ('live', 'pending'){clause} "
        "ORDER BY bm25(chunks_fts) LIMIT ?", [expression, *params, limit]).fetchall()
    return [row[0] for row in rows]


# Entry descriptions (title, tags, path words) live in a TEMP FTS5 table of the
# connection, rebuilt when the live entries or documents change (the store's schema
# has no such index; a temp table never touches the database file).
_META_TABLE = "memex_entry_meta"


def _describe(title: str | None, tags: str | None, path: str) -> str:
    """Words that name an entry: title, tags, folders and file name (dates dropped)."""
    words = [title or ""]
    if tags:
        words.append(" ".join(re.findall(r"[^\W_]+", tags)))
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", path)
    words.append(" ".join(w for w in re.findall(r"[^\W_]+", stem) if not w.isdigit()))
    return " ".join(w for w in words if w)


def _meta_signature(store) -> tuple:
    entries = store.db.execute(
        "SELECT count(*), max(id), total(id) FROM entries WHERE status IN ('live', 'pending')"
    ).fetchone()
    documents = store.db.execute(
        "SELECT count(*), total(length(path)), max(updated_at) FROM documents WHERE status = 'live'"
    ).fetchone()
    return tuple(entries) + tuple(documents)


def _ensure_meta_index(store) -> None:
    signature = _meta_signature(store)
    cached = getattr(store, "_memex_meta_signature", None)
    if cached == signature:
        return
    db = store.db
    # Python's sqlite3 opens a transaction for the inserts; close it at once (an open
    # one would hold an old read snapshot and block the store's own write()).
    was_open = db.conn.in_transaction
    db.execute(f"DROP TABLE IF EXISTS temp.{_META_TABLE}")
    db.execute(f"CREATE VIRTUAL TABLE temp.{_META_TABLE} USING fts5("
               "text, tokenize='porter unicode61 remove_diacritics 2')")
    rows = db.execute(
        "SELECT e.id, e.title, e.tags, d.path FROM entries e "
        "JOIN documents d ON d.id = e.document_id "
        "WHERE e.status IN ('live', 'pending') AND d.status = 'live'").fetchall()
    db.conn.executemany(f"INSERT INTO temp.{_META_TABLE}(rowid, text) VALUES (?, ?)",
                        [(entry_id, _describe(title, tags, path)) for entry_id, title, tags, path in rows])
    if not was_open and db.conn.in_transaction:
        db.conn.commit()
    try:
        store._memex_meta_signature = signature
    except AttributeError:  # a store that takes no attributes: rebuild every time
        pass


def meta_ranking(store, query: str, since=None, until=None, limit: int = CANDIDATES) -> list[int]:
    """Chunk ids (each matching entry's first chunk) ranked by BM25 over the entries'
    title, tags and path words."""
    expression = fts_query(query)
    if expression is None:
        return []
    _ensure_meta_index(store)
    clause, params = _date_clause(since, until, "e.date")
    rows = store.db.execute(
        "SELECT (SELECT min(c.id) FROM chunks c WHERE c.entry_id = e.id "
        "        AND c.status IN ('live', 'pending')) AS chunk_id "
        f"FROM (SELECT rowid AS entry_id, bm25({_META_TABLE}) AS score FROM temp.{_META_TABLE} "
        f"      WHERE {_META_TABLE} MATCH ?) m "
        "CROSS JOIN entries e ON e.id = m.entry_id "
        f"WHERE e.status IN ('live', 'pending'){clause} ORDER BY m.score LIMIT ?",
        [expression, *params, limit]).fetchall()
    return [row[0] for row in rows if row[0] is not None]


_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december")


def _month_number(word: str) -> int | None:
    """1-12 for a month's name or its common abbreviation ("oct", "sept"), else None."""
    for number, name in enumerate(_MONTH_NAMES, 1):
        if word == name or (len(word) >= 3 and name.startswith(word) and word in (name[:3], "sept")):
            return number
    return None


def period_ranking(store, period: tuple[int, int | None], limit: int = CANDIDATES) -> list[int]:
    """Chunk ids (each entry's first chunk) of entries whose title names ``period``:
    (year, month) → "October 2023 review"; (year, None) → "2023, looking back" but not
    a month of that year. Entries dated inside the period come first, shortest title first:
    a question about a whole month or year is often answered by the entry that sums it up."""
    year, month = period
    rows = store.db.execute(
        "SELECT e.title, e.date, (SELECT min(c.id) FROM chunks c WHERE c.entry_id = e.id "
        "        AND c.status IN ('live', 'pending')) AS chunk_id "
        "FROM entries e WHERE e.status IN ('live', 'pending') AND e.title LIKE ?",
        [f"%{year}%"]).fetchall()
    found = []
    for title, when, chunk_id in rows:
        words = re.findall(r"[^\W_]+", (title or "").lower())
        if str(year) not in words or chunk_id is None:
            continue
        named = {_month_number(w) for w in words} - {None}
        if (month is None and named) or (month is not None and month not in named):
            continue
        inside = bool(when) and str(when)[:4] == f"{year:04d}" and (
            month is None or str(when)[5:7] == f"{month:02d}")
        found.append((not inside, len(words), chunk_id))
    return [chunk_id for *_, chunk_id in sorted(found)][:limit]


def vector_ranking(store, query_vector: np.ndarray, since=None, until=None,
                   limit: int = CANDIDATES, min_similarity: float = MIN_SIMILARITY
                   ) -> list[tuple[int, float]]:
    """(chunk id, cosine) best first, reading vectors page by page (flat memory)."""
    clause, params = _date_clause(since, until)
    best_ids = np.zeros(0, dtype=np.int64)
    best_scores = np.zeros(0, dtype=np.float32)
    last_id = 0
    query_vector = np.asarray(query_vector, dtype=np.float32)
    while True:
        rows = store.db.execute(
            "SELECT e.chunk_id, e.vector FROM embeddings e JOIN chunks c ON c.id = e.chunk_id "
            f"WHERE e.chunk_id > ? AND c.status IN ('live', 'pending'){clause} "
            "ORDER BY e.chunk_id LIMIT ?",
            [last_id, *params, VECTOR_PAGE]).fetchall()
        if not rows:
            break
        last_id = rows[-1][0]
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
        scores = matrix @ query_vector
        keep = scores >= min_similarity
        ids, scores = ids[keep], scores[keep]
        best_ids = np.concatenate([best_ids, ids])
        best_scores = np.concatenate([best_scores, scores.astype(np.float32)])
        if len(best_ids) > limit:
            keep = np.argpartition(-best_scores, limit)[:limit]
            best_ids, best_scores = best_ids[keep], best_scores[keep]
    order = np.argsort(-best_scores, kind="stable")[:limit]
    return [(int(best_ids[i]), float(best_scores[i])) for i in order]


def snippet(text: str, terms: list[str], width: int = 220) -> str:
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    lower = flat.lower()
    hits = [lower.find(term) for term in terms if term and lower.find(term) >= 0]
    center = min(hits) if hits else 0
    start = max(0, center - width // 3)
    end = min(len(flat), start + width)
    start = max(0, end - width)
    if start > 0:
        space = flat.find(" ", start)
        start = space + 1 if 0 <= space < center else start
    piece = flat[start:end].strip()
    return ("…" if start > 0 else "") + piece + ("…" if end < len(flat) else "")


def search(store, query: str, since=None, until=None, limit: int = 10, embedder=None,
           min_similarity: float = MIN_SIMILARITY,
           period: tuple[int, int | None] | None = None) -> list:
    """Ranked passages for ``query`` within [since, until] (ISO dates, inclusive).

    With ``embedder`` (see ``ingest.embeddings.load_embedder``) and stored vectors
    the result fuses BM25 and cosine rankings; otherwise it is BM25 alone. ``period``
    ((year, month) or (year, None), the whole month or year the question is about)
    adds a ranking of the entries titled with that period (see ``period_ranking``).
    """
    limit = max(1, int(limit))
    candidates = max(CANDIDATES, limit * 3)
    fts_ids = fts_ranking(store, query, since, until, candidates)
    meta_ids = meta_ranking(store, query, since, until, candidates)
    vector_hits: list[tuple[int, float]] = []
    if embedder is not None and query and query.strip():
        has_vectors = store.db.execute("SELECT 1 FROM embeddings LIMIT 1").fetchone()
        if has_vectors:
            vector = embedder.embed([query])[0]
            vector_hits = vector_ranking(store, vector, since, until, candidates, min_similarity)
    scores: dict[int, float] = {}
    fts_rank = {chunk_id: rank for rank, chunk_id in enumerate(fts_ids, 1)}
    vector_rank = {chunk_id: rank for rank, (chunk_id, _) in enumerate(vector_hits, 1)}
    meta_rank = {chunk_id: rank for rank, chunk_id in enumerate(meta_ids, 1)}
    period_rank = ({chunk_id: rank for rank, chunk_id in enumerate(period_ranking(store, period), 1)}
                   if period is not None else {})
    similarity = dict(vector_hits)
    # The period's own summary counts double: it is one entry among many that share the
    # question's words, and the question asks for exactly what it sums up.
    for ranking, weight in ((fts_rank, 1.0), (vector_rank, 1.0), (meta_rank, 1.0),
                            (period_rank, PERIOD_WEIGHT)):
        for chunk_id, rank in ranking.items():
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (RRF_K + rank)
    ordered = sorted(scores, key=lambda cid: (-scores[cid], fts_rank.get(cid, 10**9)))[:limit]
    if not ordered:
        return []
    marks = ",".join("?" * len(ordered))
    rows = {row[0]: row for row in store.db.execute(
        "SELECT c.id, d.path, s.root, c.date, c.text, c.document_id, c.entry_id, e.title, "
        "e.date_rule "
        "FROM chunks c JOIN documents d ON d.id = c.document_id "
        "JOIN sources s ON s.id = d.source_id JOIN entries e ON e.id = c.entry_id "
        f"WHERE c.id IN ({marks})", ordered)}
    terms = query_terms(query)
    results = []
    for chunk_id in ordered:
        row = rows.get(chunk_id)
        if row is None:
            continue
        _, path, root, when, text, document_id, entry_id, title, date_rule = row
        results.append(SearchResult(
            path=path, root=root, date=when, snippet=snippet(text, terms), text=text,
            score=scores[chunk_id], document_id=document_id, chunk_id=chunk_id,
            entry_id=entry_id, title=title, fts_rank=fts_rank.get(chunk_id),
            vector_rank=vector_rank.get(chunk_id), similarity=similarity.get(chunk_id),
            date_rule=date_rule))
    return results
