"""Encryption at rest end to end (issue 21): the same work on a plain data home and on an
encrypted one, side by side in one run, and the ratio. Target: ≤ 10 % slower on each row.

    .venv/bin/python bench/encryption.py [--journals examples/journal,...] [--repeats 3]
        [--build-tokens 4096] [--asks 8] [--out FILE]

- ingest: `memex add`'s work in this process (open the store, scan, extract, tokenize,
  append to the stream, embed with MiniLM, index), fresh homes, the variants interleaved;
  MB/s of journal text. The passphrase's cost (Argon2id, once per command) is a row of
  its own.
- memory build: one model reading the same chunks into two memories in turn, one kept in
  a plain folder and one in an encrypted home (every token's rows written as `memex
  memory build` writes them), then each saved and loaded back; tokens/s.
- `memex ask`: the first printed token and the end, from the command's start, of new
  questions asked in turn of the two homes' warm servers (the encrypted one holding its
  key); and of in-process asks (`MEMEX_NO_SERVER=1`: model load and, encrypted, the
  passphrase every time).
- disk: bytes under each home after the ingest and the memory build (the model cache
  apart).
Medians of the repeats. Timings are not a test: they print a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name, print_report  # (bench/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PASSPHRASE = "a bench passphrase, long enough"
VARIANTS = ("plain", "encrypted")


def journal_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def home_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.rglob("*")
               if p.is_file() and "models" not in p.relative_to(home).parts)


def new_home(folder: Path, variant: str, params) -> Path:
    import vault

    folder.mkdir(parents=True, mode=0o700)
    if variant == "encrypted":
        vault.remember(folder, vault.create(folder, PASSPHRASE, params))
    return folder


def bench_ingest(journal: Path, tokenizer, embedder, repeats: int, params, root: Path):
    import ingest

    seconds = {v: [] for v in VARIANTS}
    homes = {}
    for repeat in range(repeats):
        order = VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            home = new_home(root / f"{journal.parent.name}-{variant}-{repeat}", variant, params)
            began = time.perf_counter()
            store = ingest.open_store(home, tokenizer)
            ingest.add_source(store, journal)
            ingest.run(store, tokenizer, embed=True, embedder=embedder)
            store.close()
            seconds[variant].append(time.perf_counter() - began)
            if homes.get(variant):
                shutil.rmtree(homes[variant])
            homes[variant] = home
            print(f"  ingest {journal.parent.name} {variant}: {seconds[variant][-1]:.1f} s",
                  file=sys.stderr)
    return {v: statistics.median(s) for v, s in seconds.items()}, homes


def bench_build(homes: dict, model, tokens: int, chunk: int):
    """Both memories read the same chunks in turn; then each is saved and loaded back."""
    from assistant.engine import Engine
    from longnet.memory import Memory

    ids = Engine(homes["plain"]).store.stream.read(0, tokens).tolist()
    memories, rates = {}, {v: [] for v in VARIANTS}
    for variant, home in homes.items():
        memories[variant] = model.memory()
        memories[variant].keep_rows(home / "memory")
    for begin in range(0, len(ids), chunk):
        piece = ids[begin:begin + chunk]
        order = VARIANTS if (begin // chunk) % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            began = time.perf_counter()
            memories[variant].append(piece, return_logits=False, stream_offset=begin + len(piece))
            rates[variant].append(len(piece) / (time.perf_counter() - began))
        print(f"  build: {begin + len(piece):,} tokens", file=sys.stderr)
    saves, loads = {}, {}
    for variant in VARIANTS:
        began = time.perf_counter()
        memories[variant].save(homes[variant] / "memory")
        saves[variant] = time.perf_counter() - began
        began = time.perf_counter()
        Memory.load(homes[variant] / "memory", model)
        loads[variant] = time.perf_counter() - began
    return {v: statistics.median(r) for v, r in rates.items()}, saves, loads


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(homes: dict, limit_s: float = 180.0) -> None:
    """Until both servers stop working in their idle time (embedding the newest sentences
    ahead of questions): a server busy in the background would slow the other's answers."""
    from assistant.server.client import hello

    pids = [hello(home)["pid"] for home in homes.values()]
    deadline = time.monotonic() + limit_s
    before = [cpu_seconds(pid) for pid in pids]
    while time.monotonic() < deadline:
        time.sleep(3.0)
        now = [cpu_seconds(pid) for pid in pids]
        if all(b - a < 0.1 for a, b in zip(before, now)):
            return
        before = now


def bench_asks(homes: dict, questions: list[str], mode: str):
    from warm import stop_server, timed_ask

    rows = {}
    env_before = dict(os.environ)
    os.environ["MEMEX_PASSPHRASE"] = PASSPHRASE  # the encrypted home's first ask unlocks
    try:
        for variant, home in homes.items():  # start both servers (not timed)
            timed_ask(home, questions[0], mode, server=True)
        wait_until_idle(homes)
        for label, server in (("warm server", True), ("in-process", False)):
            if not server:
                for home in homes.values():
                    stop_server(home)
            firsts, totals = {v: [] for v in VARIANTS}, {v: [] for v in VARIANTS}
            asked = questions[1:] if server else questions[1:4]
            for number, question in enumerate(asked):
                order = VARIANTS if number % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    if server:  # a warm server needs no passphrase: it holds the key
                        os.environ.pop("MEMEX_PASSPHRASE", None)
                    else:
                        os.environ["MEMEX_PASSPHRASE"] = PASSPHRASE
                    first, total, _ = timed_ask(homes[variant], question, mode, server)
                    firsts[variant].append(first)
                    totals[variant].append(total)
                    print(f"  ask {label} {variant}: {first:.2f} / {total:.2f} s",
                          file=sys.stderr)
            rows[label] = {v: (statistics.median(firsts[v]), statistics.median(totals[v]),
                               len(firsts[v])) for v in VARIANTS}
    finally:
        for home in homes.values():
            stop_server(home)
        os.environ.clear()
        os.environ.update(env_before)
    return rows


def ratio(plain: float, encrypted: float, higher_is_better: bool) -> str:
    slower = plain / encrypted if higher_is_better else encrypted / plain
    return f"{slower:.2f}×"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--journals", default="examples/journal,"
                        "../shared/data/real-journals/barbellion/journal")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--build-tokens", type=int, default=4096)
    parser.add_argument("--build-chunk", type=int, default=1024)
    parser.add_argument("--asks", type=int, default=8, help="questions per ask row")
    parser.add_argument("--mode", default="hybrid")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import vault
    from assistant.home import model_cache_dir
    from ingest.embeddings import load_embedder
    from longnet.model import LongNetLM
    from longnet.weights import load_tokenizer, resolve_model_dir

    cache = Path(os.environ.setdefault("MEMEX_MODEL_CACHE",
                                       str(Path.home() / ".cache" / "memex-bench" / "models")))
    tokenizer = load_tokenizer(None, model_cache_dir())
    embedder = load_embedder()
    params = vault.tune()
    unlock_s = []
    with tempfile.TemporaryDirectory() as probe:
        vault.create(probe, PASSPHRASE, params)
        for _ in range(3):
            began = time.perf_counter()
            vault.unlock(probe, PASSPHRASE)
            unlock_s.append(time.perf_counter() - began)
    questions = [json.loads(line)["question"] for line in
                 (REPO / "examples" / "questions.jsonl").read_text().splitlines()][:args.asks + 1]

    lines = [(f"Encryption at rest, end to end: {cpu_name()}; plain vs encrypted data home "
              "(SQLCipher 4 + AES-256-GCM chunks), medians, the variants interleaved."), "",
             "| work | journal | plain | encrypted | encrypted ÷ plain (time) |",
             "|---|---|---:|---:|---:|"]
    root = Path(tempfile.mkdtemp(prefix="memex-bench-encryption-"))
    model = None
    try:
        for journal_arg in args.journals.split(","):
            journal = (REPO / journal_arg).resolve()
            name = journal.parent.name if journal.name == "journal" else journal.name
            size = journal_bytes(journal)
            seconds, homes = bench_ingest(journal, tokenizer, embedder, args.repeats, params,
                                          root)
            mbs = {v: size / 1e6 / seconds[v] for v in VARIANTS}
            lines.append(f"| ingest (MB/s, {size / 1e6:.1f} MB, with embeddings) | {name} | "
                         f"{mbs['plain']:.3f} | {mbs['encrypted']:.3f} | "
                         f"{ratio(mbs['plain'], mbs['encrypted'], True)} |")
            if model is None:
                model = LongNetLM.from_pretrained(resolve_model_dir(None, cache))
            rates, saves, loads = bench_build(homes, model, args.build_tokens, args.build_chunk)
            lines.append(f"| memory build (tokens/s, {args.build_tokens:,} tokens, rows kept) | "
                         f"{name} | {rates['plain']:.0f} | {rates['encrypted']:.0f} | "
                         f"{ratio(rates['plain'], rates['encrypted'], True)} |")
            lines.append(f"| memory save + load (s) | {name} | "
                         f"{saves['plain']:.2f} + {loads['plain']:.2f} | "
                         f"{saves['encrypted']:.2f} + {loads['encrypted']:.2f} | "
                         f"{ratio(saves['plain'] + loads['plain'], saves['encrypted'] + loads['encrypted'], False)} |")
            disk = {v: home_bytes(homes[v]) for v in VARIANTS}
            lines.append(f"| disk (MB: store, stream, memory) | {name} | "
                         f"{disk['plain'] / 1e6:.1f} | {disk['encrypted'] / 1e6:.1f} | "
                         f"{disk['encrypted'] / disk['plain']:.3f}× (size) |")
            if journal_arg == args.journals.split(",")[0]:
                for home in homes.values():
                    vault.forget_key(home)  # the commands unlock it themselves
                asks = bench_asks(homes, questions, args.mode)
                for label, row in asks.items():
                    (pf, pt, n), (ef, et, _) = row["plain"], row["encrypted"]
                    lines.append(f"| `memex ask` {args.mode}, {label}: first token / total (s), "
                                 f"{n} q | {name} | {pf:.2f} / {pt:.2f} | {ef:.2f} / {et:.2f} | "
                                 f"{ef / pf:.2f}× / {et / pt:.2f}× |")
            for home in homes.values():
                shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines += ["", (f"Opening an encrypted home costs one Argon2id derivation per command: "
                   f"{params.time_cost} passes over {params.memory_kib // 1024} MiB, "
                   f"{statistics.median(unlock_s):.2f} s here (a warm server's ask pays none: "
                   "it holds the key). The in-process ask row includes it."), ""]
    print_report("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
