"""Encryption at rest, its parts side by side (issue 21): SQLite plain vs SQLCipher 4
(sqlcipher3-binary, through sqlite-utils as memex uses it) vs SQLite3 Multiple Ciphers
(apsw-sqlite3mc, through apsw), and files plain vs in AES-256-GCM chunks
(``vault.ChunkedFile``); and how long the tuned Argon2id takes.

    .venv/bin/python bench/vault.py [--entries 20000] [--repeats 3] [--out FILE]

Each row does the same work: entries written with an FTS5 index in WAL mode, then 300
full-text searches; a stream of 4 MB appended in 64 KB pieces, then 2,000 random reads
of 4 KB. Medians of the repeats, the variants interleaved in each repeat.
Timings are not a test: they print a table. The SQLite drivers are optional extras
(``pip install sqlcipher3-binary apsw-sqlite3mc``); a missing one is skipped and said so.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name, print_report  # (bench/ is on sys.path when run as a script)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VOCABULARY = [f"w{i}" for i in range(5000)]
# Zipf-like word frequencies, as in prose: a few words everywhere, most words rare.
WEIGHTS = [1.0 / (rank + 1) for rank in range(len(VOCABULARY))]


def entries(n: int, seed: int = 0) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    return [(i, " ".join(rng.choices(VOCABULARY, WEIGHTS, k=60))) for i in range(n)]


def sqlite_plain(path: Path):
    return sqlite3.connect(str(path))


def sqlite_cipher(path: Path):
    import sqlcipher3

    conn = sqlcipher3.connect(str(path))
    conn.execute(f"PRAGMA key = \"x'{os.urandom(32).hex()}'\"")
    return conn


def run_sqlite(connect, folder: Path, rows: list, queries: list[str]) -> tuple[float, float]:
    import sqlite_utils

    conn = connect(folder / "memex.db")
    conn.execute("PRAGMA journal_mode=WAL")
    db = sqlite_utils.Database(conn)
    began = time.perf_counter()
    db["entries"].insert_all(({"id": i, "text": t} for i, t in rows), pk="id", batch_size=500)
    db["entries"].enable_fts(["text"], create_triggers=True)
    conn.commit()
    write_s = time.perf_counter() - began
    began = time.perf_counter()
    for q in queries:
        db.execute("select rowid from entries_fts where entries_fts match ? "
                   "order by rank limit 8", [q]).fetchall()
    query_s = time.perf_counter() - began
    conn.close()
    return write_s, query_s


def run_apsw(folder: Path, rows: list, queries: list[str], keyed: bool = True
             ) -> tuple[float, float]:
    import apsw

    conn = apsw.Connection(str(folder / "memex.db"))
    if keyed:
        conn.execute(f"PRAGMA cipher = 'sqlcipher'; PRAGMA key = \"x'{os.urandom(32).hex()}'\"")
    conn.execute("PRAGMA journal_mode=WAL")
    began = time.perf_counter()
    conn.execute("create table entries (id integer primary key, text text)")
    with conn:
        conn.executemany("insert into entries values (?, ?)", rows)
    conn.execute("create virtual table entries_fts using fts5(text, content='entries', "
                 "content_rowid='id'); insert into entries_fts(entries_fts) values('rebuild')")
    write_s = time.perf_counter() - began
    began = time.perf_counter()
    for q in queries:
        list(conn.execute("select rowid from entries_fts where entries_fts match ? "
                          "order by rank limit 8", (q,)))
    query_s = time.perf_counter() - began
    conn.close()
    return write_s, query_s


def run_file(files, folder: Path, mb: int = 4) -> tuple[float, float]:
    path = folder / "stream.bin"
    f = files.open(path)
    piece = os.urandom(64 * 1024)
    began = time.perf_counter()
    for _ in range(mb * 16):
        f.append(piece)
    append_s = time.perf_counter() - began
    size = f.size()
    rng = random.Random(1)
    began = time.perf_counter()
    for _ in range(2000):
        start = rng.randrange(0, size - 4096)
        f.read(start, start + 4096)
    read_s = time.perf_counter() - began
    return append_s, read_s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    from vault import Files
    from vault.keys import derive, tune

    rows = entries(args.entries)
    # two words of middling frequency a query (a name and a thing, say): a few hundred hits
    queries = [" OR ".join(random.Random(i).sample(VOCABULARY[50:500], 2)) for i in range(300)]
    variants = {"SQLite (plain, sqlite3)": lambda f: run_sqlite(sqlite_plain, f, rows, queries)}
    skipped = []
    try:
        import sqlcipher3  # noqa: F401

        variants["SQLCipher 4 (sqlcipher3-binary)"] = \
            lambda f: run_sqlite(sqlite_cipher, f, rows, queries)
    except ImportError:
        skipped.append("sqlcipher3-binary")
    try:
        import apsw  # noqa: F401

        variants["SQLite3MC, no key (apsw-sqlite3mc)"] = \
            lambda f: run_apsw(f, rows, queries, keyed=False)
        variants["SQLite3MC, SQLCipher scheme (apsw-sqlite3mc)"] = \
            lambda f: run_apsw(f, rows, queries)
    except ImportError:
        skipped.append("apsw-sqlite3mc")
    key = os.urandom(32)
    file_variants = {"file, plain": Files(None), "file, AES-256-GCM chunks": Files(key)}
    results: dict[str, list] = {name: [] for name in (*variants, *file_variants)}
    for _ in range(args.repeats):
        for name, run in variants.items():
            folder = Path(tempfile.mkdtemp(prefix="memex-vault-bench-"))
            try:
                results[name].append(run(folder))
            finally:
                shutil.rmtree(folder)
        for name, files in file_variants.items():
            folder = Path(tempfile.mkdtemp(prefix="memex-vault-bench-"))
            try:
                results[name].append(run_file(files, folder))
            finally:
                shutil.rmtree(folder)
    params = tune()
    began = time.perf_counter()
    derive("a passphrase", params)
    kdf_s = time.perf_counter() - began

    def median(name, i):
        return statistics.median(r[i] for r in results[name])

    lines = [(f"Encryption at rest, the parts: {cpu_name()}, {os.cpu_count()} CPUs; medians of "
             f"{args.repeats}, interleaved."), "",
             (f"| database: {args.entries:,} entries + FTS5, WAL | write + index (s) | "
             "300 searches (s) | × plain (write, search) |"), "|---|---:|---:|---:|"]
    base = (median("SQLite (plain, sqlite3)", 0), median("SQLite (plain, sqlite3)", 1))
    for name in variants:
        w, q = median(name, 0), median(name, 1)
        lines.append(f"| {name} | {w:.2f} | {q:.3f} | {w / base[0]:.2f}, {q / base[1]:.2f} |")
    lines += ["", ("| file: 4 MB in 64 KB appends, 2,000 random 4 KB reads | append (s) | "
              "reads (s) | append MB/s |"), "|---|---:|---:|---:|"]
    for name in file_variants:
        a, r = median(name, 0), median(name, 1)
        lines.append(f"| {name} | {a:.3f} | {r:.3f} | {4 / a:,.0f} |")
    lines += ["", (f"Argon2id tuned here: {params.time_cost} passes over {params.memory_kib // 1024} "
              f"MiB, one lane: {kdf_s:.2f} s to open a data home.")]
    if skipped:
        lines.append(f"Not installed, skipped: {', '.join(skipped)}.")
    print_report("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
