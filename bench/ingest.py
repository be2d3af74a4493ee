"""Ingest throughput, no-change rescan time and peak memory on a generated corpus.

    python bench/ingest.py                         # 10k files / 200 MB (issue 5's corpus)
    python bench/ingest.py --files 2000 --mb 40    # scaled down
    python bench/ingest.py --out bench/results/ingest-cpu.txt
    git worktree add /tmp/memex-before fe0a77a      # the code before the speed work
    python bench/ingest.py --baseline /tmp/memex-before   # both, side by side, one corpus

The corpus is journal-like Markdown (80 %) and plain text (20 %) in year/month
folders: front matter on some files, date headings splitting others, Zipf-
distributed words. Each measurement runs in a fresh child process so its peak
RSS (``ru_maxrss``) is its own:

* **first build**: scan + read + chunk + FTS5 (phase "read"; files are read, parsed,
  chunked and tokenized by worker processes beside the SQLite writes when the run is
  large) and append to the stream in date order (phase "stream"), embeddings off;
  MB/s = corpus bytes / seconds; CPU-seconds include the workers'.
  Run on a quarter of the corpus and on all of it: flat memory means the same
  peak RSS for both.
* **no-change rescan**: ``memex ingest`` again over the unchanged tree (median of 3).
* **embeddings**: all-MiniLM-L6-v2 over a sample of chunks, in MiniLM tokens/s.

With ``--baseline PATH`` (a checkout of older code) the first build, rescans and
embeddings also run with that code, on the same corpus in the same run, and the
table shows both. The machine's 2 cores are shared: each row records the load
average when it started, and CPU-seconds (all threads of the process) are the
figure least moved by other work.

Targets (issue 5): >= 5 MB/s into stream + FTS on 2 cores; rescan of 10k files < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Children measuring a baseline import its code instead (put first on the path).
CODE = Path(os.environ.get("MEMEX_BENCH_CODE") or REPO)
sys.path.insert(0, str(CODE))
from _machine import cpu_name  # noqa: E402  (bench/ is on sys.path when run as a script)

# Common English words (a Zipf draw over them reads like plain prose to a BPE
# tokenizer: about 4-5 characters per token, as real journals are), plus a few
# made-up names so that the vocabulary has a long tail.
ENGLISH = """
the of and to a in is it you that he was for on are with as I his they be at one have this
from or had by hot word but what some we can out other were all there when up use your how
said an each she which do their time if will way about many then them write would like so
these her long make thing see him two has look more day could go come did number sound no
most people my over know water than call first who may down side been now find any new work
part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line
differ turn cause much mean before move right boy old too same tell does set three want air
well also play small end put home read hand port large spell add even land here must big high
such follow act why ask men change went light kind off need house picture try us again animal
point mother world near build self earth father head stand own page should country found
answer school grow study still learn plant cover food sun four between state keep eye never
last let thought city tree cross farm hard start might story saw far sea draw left late run
while press close night real life few north open seem together next white children begin got
walk example ease paper group always music those both mark often letter until mile river car
feet care second book carry took science eat room friend began idea fish mountain stop once
base hear horse cut sure watch color face wood main enough plain girl usual young ready above
ever red list though feel talk bird soon body dog family direct pose leave song measure door
product black short numeral class wind question happen complete ship area half rock order fire
south problem piece told knew pass since top whole king space heard best hour better true
during hundred five remember step early hold west ground interest reach fast verb sing listen
six table travel less morning ten simple several vowel toward war lay against pattern slow
center love person money serve appear road map rain rule govern pull cold notice voice unit
power town fine certain fly fall lead cry dark machine note wait plan figure star box noun
field rest correct able pound done beauty drive stood contain front teach week final gave
green oh quick develop ocean warm free minute strong special mind behind clear tail produce
fact street inch multiply nothing course stay wheel full force blue object decide surface deep
moon island foot system busy test record boat common gold possible plane stead dry wonder laugh
thousand ago ran check game shape equate miss brought heat snow tire bring yes distant fill
east paint language among coffee tea breakfast lunch dinner tired happy sad slept dream garden
walked talked called felt wrote worked meeting office weekend holiday train bus bike beach
""".split()
NAMES = ("Anna Tomás Marta Lisbon Porto Berlin Kenji Amara Oskar Lucía Farid Ingrid Nadia "
         "Dmitri Chiara Rafael Yusuf Elif Mateo Sofia").split()


SYLLABLES = "ka lo mi ren sta ver do an ti mor gen pla cu ser bri nal tor ex lu fa ne".split()


def make_vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    words = ENGLISH + NAMES
    rng.shuffle(words)
    # The long tail: rare words (places, jargon, typos) that split into several tokens.
    tail = ["".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(1000)]
    words += [w + "," if i % 9 == 0 else w for i, w in enumerate(tail)]
    weights = [1.0 / (rank + 1) for rank in range(len(words))]  # Zipf
    return words, weights


def make_sentences(rng: random.Random, count: int = 6000) -> list[str]:
    words, weights = make_vocabulary(rng)
    sentences = []
    for _ in range(count):
        picked = rng.choices(words, weights, k=rng.randint(6, 24))
        sentence = " ".join(picked)
        sentences.append(sentence[0].upper() + sentence[1:] + rng.choice([".", ".", ".", "!", "?"]))
    return sentences


def generate_corpus(root: Path, files: int, total_bytes: int, seed: int = 0) -> int:
    """Write ``files`` files of about ``total_bytes`` in all; returns the bytes written."""
    rng = random.Random(seed)
    sentences = make_sentences(rng)
    mean = total_bytes / files
    written = 0
    for index in range(files):
        year = 2015 + index % 10
        month = 1 + (index // 10) % 12
        day = 1 + (index // 120) % 28
        target = max(200, int(rng.lognormvariate(0, 0.6) * mean / 1.2))
        parts: list[str] = []
        size = 0
        kind = index % 10
        if kind == 0:  # a long journal file with dated headings
            entry_day = 1
            while size < target:
                heading = f"## {year}-{month:02d}-{min(entry_day, 28):02d}\n\n"
                parts.append(heading)
                size += len(heading)
                entry_day += 1
                for _ in range(rng.randint(3, 8)):
                    paragraph = " ".join(rng.choices(sentences, k=rng.randint(2, 6))) + "\n\n"
                    parts.append(paragraph)
                    size += len(paragraph)
            name = f"{year}/journal-{index}.md"
        else:
            if kind in (1, 2):
                parts.append(f"---\ntitle: Note {index}\ndate: {year}-{month:02d}-{day:02d}\n"
                             f"tags: [bench, t{index % 7}]\n---\n\n")
            while size < target:
                paragraph = " ".join(rng.choices(sentences, k=rng.randint(2, 8))) + "\n\n"
                parts.append(paragraph)
                size += len(paragraph)
            suffix = ".txt" if kind >= 8 else ".md"
            name = f"{year}/{month:02d}/{year}-{month:02d}-{day:02d}-{index}{suffix}"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(parts).encode("utf-8")
        path.write_bytes(data)
        written += len(data)
    return written


# -- child processes ---------------------------------------------------------
def child_ingest(home: str, roots: list[str], repeat_rescans: int,
                 workers: int | None = None) -> dict:
    import psutil

    import ingest
    from longnet.weights import load_tokenizer

    assert Path(ingest.__file__).resolve().is_relative_to(CODE.resolve()), ingest.__file__
    load = os.getloadavg()[0]
    tokenizer = load_tokenizer(None, None)
    store = ingest.open_store(home, tokenizer)
    baseline = psutil.Process().memory_info().rss / 2**20  # imports + tokenizer
    for root in roots:
        ingest.add_source(store, root)
    def cpu_seconds() -> float:  # all threads, and worker processes once they have ended
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    started, cpu_started = time.perf_counter(), cpu_seconds()
    own_started, thread_started = time.process_time(), time.thread_time()
    options = {} if workers is None else {"workers": workers}  # (older code: no option)
    report = ingest.run(store, tokenizer, embed=False, **options)
    total = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_started  # independent of other load
    own_cpu = time.process_time() - own_started  # this process (all its threads)
    thread_cpu = time.thread_time() - thread_started  # the thread that writes SQLite
    rescans = []
    for _ in range(repeat_rescans):
        began = time.perf_counter()
        again = ingest.run(store, tokenizer, embed=False)
        rescans.append(time.perf_counter() - began)
        assert again.unchanged == report.scanned and again.tokens_appended == 0
    status = store.status()
    store.close()
    return {"seconds": total, "cpu_s": cpu, "own_cpu_s": own_cpu, "thread_cpu_s": thread_cpu,
            "read_s": report.seconds.get("read", 0.0),
            "stream_s": report.seconds.get("stream", 0.0), "bytes": report.bytes_read,
            "files": report.new, "tokens": report.tokens_appended, "rescans": rescans,
            "chunks": status["chunks"],
            "db_bytes": status["bytes"]["memex.db"] + status["bytes"]["memex.db-wal"],
            "baseline_mb": baseline, "load": load,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def child_embed(home: str, sample: int) -> dict:
    import ingest
    from ingest.embeddings import Embedder

    load = os.getloadavg()[0]
    store = ingest.open_store(home)
    texts = [row[0] for row in store.db.execute(  # the same sample for every run
        "SELECT text FROM chunks ORDER BY (id * 2654435761) % 4294967296 LIMIT ?", [sample])]
    store.close()
    embedder = Embedder()
    embedder.embed(texts[:8])  # warm up
    tokens = embedder.count_tokens(texts)
    began, cpu_began = time.perf_counter(), time.process_time()
    embedder.embed(texts)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    return {"chunks": len(texts), "tokens": tokens, "seconds": seconds, "cpu_s": cpu,
            "load": load, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def int8_agreement() -> str:
    """Would int8 dynamic quantisation of MiniLM's Linear layers keep retrieval quality?
    Cosine between float32 and int8 vectors of every chunk of the example journal
    (needs >= 0.99), and the speed of both on the same chunks."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    from ingest.chunking import chunk_spans
    from ingest.embeddings import Embedder

    texts = []
    for path in sorted((REPO / "examples" / "journal").rglob("*.md")):
        text = path.read_text(encoding="utf-8", errors="replace")
        texts += [text[a:b] for a, b in chunk_spans(text)]
    exact, quantised = Embedder(), Embedder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantised.model = quantize_dynamic(
            quantised.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    tokens = exact.count_tokens(texts)
    results = {}
    for name, embedder in (("float32", exact), ("int8", quantised)):
        embedder.embed(texts[:8])
        began = time.process_time()
        results[name] = embedder.embed(texts)
        results[name + "_speed"] = tokens / (time.process_time() - began)
    cosine = (results["float32"] * results["int8"]).sum(axis=1)
    verdict = "kept" if cosine.min() >= 0.99 else "rejected (needs >= 0.99)"
    return (f"int8 dynamic quantisation, {len(texts)} chunks of examples/journal: cosine to "
            f"float32 mean {cosine.mean():.3f}, min {cosine.min():.3f}: {verdict}; "
            f"{results['float32_speed']:,.0f} vs {results['int8_speed']:,.0f} tokens/CPU-s")


def run_child(*args: str, code: Path | None = None) -> dict:
    env = dict(os.environ)
    if code is not None:
        env["MEMEX_BENCH_CODE"] = str(code)
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                            env=env)
    if result.returncode != 0:
        raise SystemExit(f"child {args[:2]} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the table ---------------------------------------------------------------
def machine() -> str:
    cpu = cpu_name()
    return (f"{cpu}; {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.1f} at start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mb", type=float, default=200.0)
    parser.add_argument("--embed-sample", type=int, default=256,
                        help="chunks embedded to measure embedding speed")
    parser.add_argument("--rescans", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--keep", type=Path, help="generate the corpus here and keep it")
    parser.add_argument("--baseline", type=Path,
                        help="a checkout of older code to measure side by side (whole corpus)")
    parser.add_argument("--baseline-label", default=None, help="its name in the table")
    parser.add_argument("--one-process-too", action="store_true",
                        help="also build the whole corpus with workers=0 (no worker processes)")
    parser.add_argument("--int8-check", action="store_true",
                        help="only check int8 MiniLM against float32 on examples/journal")
    parser.add_argument("--child-ingest", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--child-embed", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_ingest:
        home, rescans, *roots = args.child_ingest
        workers = None
        if rescans.startswith("w0:"):  # "w0:<rescans>": build without worker processes
            workers, rescans = 0, rescans[3:]
        print(json.dumps(child_ingest(home, roots, int(rescans), workers)))
        return
    if args.child_embed:
        print(json.dumps(child_embed(args.child_embed[0], int(args.child_embed[1]))))
        return
    if args.int8_check:
        print(int8_agreement())
        return

    from rich.console import Console

    console = Console(stderr=True)
    work = Path(tempfile.mkdtemp(prefix="memex-bench-")) if not args.keep else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        load = machine()
        quarter_files = max(1, args.files // 4)
        parts = [work / "corpus" / f"part{i}" for i in range(4)]
        console.print(f"generating {args.files} files / {args.mb:g} MB in {work} …")
        written = 0
        for i, part in enumerate(parts):
            count = quarter_files if i < 3 else args.files - 3 * quarter_files
            written += generate_corpus(part, count, int(args.mb * 1e6 * count / args.files), i)
        console.print(f"corpus: {written / 1e6:.1f} MB")

        console.print("first build of a quarter of the corpus …")
        small = run_child("--child-ingest", str(work / "home-quarter"), "0", str(parts[0]))
        before = None
        if args.baseline:
            console.print(f"first build of the whole corpus with {args.baseline} …")
            before = run_child("--child-ingest", str(work / "home-before"), str(args.rescans),
                               *map(str, parts), code=args.baseline)
            before["embed"] = run_child("--child-embed", str(work / "home-before"),
                                        str(args.embed_sample), code=args.baseline)
            shutil.rmtree(work / "home-before", ignore_errors=True)
        console.print("first build of the whole corpus, then rescans …")
        full = run_child("--child-ingest", str(work / "home-full"), str(args.rescans),
                         *map(str, parts))
        console.print("embeddings …")
        full["embed"] = run_child("--child-embed", str(work / "home-full"), str(args.embed_sample))
        single = None
        if args.one_process_too:
            shutil.rmtree(work / "home-full", ignore_errors=True)
            console.print("first build of the whole corpus in one process (workers=0) …")
            single = run_child("--child-ingest", str(work / "home-single"), "w0:0",
                               *map(str, parts))
        end_load = os.getloadavg()[0]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    runs = [("now", full)]
    if single is not None:
        runs.append(("now, workers=0", single))
    if before is not None:
        runs.insert(0, (args.baseline_label or f"before ({args.baseline.name})", before))
    table = format_table(runs, small, load, end_load)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")


def format_table(runs: list[tuple[str, dict]], small: dict, load: str, end_load: float) -> str:
    def cells(full: dict) -> list[str]:
        mb = full["bytes"] / 1e6
        rescan = statistics.median(full["rescans"]) if full["rescans"] else float("nan")
        embed = full.get("embed")
        return [
            f"{full['seconds']:.1f} s = {mb / full['seconds']:.2f} MB/s",
            f"{full['cpu_s']:.1f} CPU-s = {mb / full['cpu_s']:.2f} MB/CPU-s",
            (f"{full['thread_cpu_s']:.1f} / {full['own_cpu_s']:.1f} / "
             f"{full['cpu_s'] - full['own_cpu_s']:.1f} CPU-s"),
            f"{full['read_s']:.1f} s = {mb / full['read_s']:.2f} MB/s",
            f"{full['stream_s']:.1f} s = {mb / full['stream_s']:.2f} MB/s",
            f"{full['tokens'] / full['stream_s']:,.0f} tokens/s",
            f"{rescan:.2f} s (median of {len(full['rescans'])})" if full["rescans"] else "—",
            f"{embed['tokens'] / embed['seconds']:,.0f} tokens/s" if embed else "—",
            f"{embed['tokens'] / embed['cpu_s']:,.0f} tokens/CPU-s" if embed else "—",
            f"{full['maxrss_mb']:.0f} MB (+{full['maxrss_mb'] - full['baseline_mb']:.0f})",
            f"{full['db_bytes'] / 1e6:.1f} MB",
            f"{full['load']:.1f}",
        ]

    full = dict(runs)["now"]
    names = [
        "first build (read + FTS5 + stream), wall",
        "  CPU time of the first build",
        "  of it: writing thread / its process / workers",
        "  scan, read, chunk, FTS5 (wall)",
        "  tokenize + append to stream (wall)",
        "  stream tokens per second (wall)",
        f"no-change rescan of {full['files']:,} files",
        f"embeddings (MiniLM-L6, {full['embed']['chunks']} chunks), wall",
        "  embeddings per CPU-second",
        "peak RSS (above imports + tokenizer)",
        "database size (with its WAL)",
        "load average when the build started",
    ]
    columns = [[label] + cells(data) for label, data in runs]
    width = max(len(name) for name in names)
    widths = [max(len(cell) for cell in column) for column in columns]
    mb = full["bytes"] / 1e6
    lines = [f"memex ingest benchmark — {time.strftime('%Y-%m-%d')}", f"machine: {load}",
             f"load average at the end {end_load:.1f}",
             "targets: >= 5 MB/s into stream + FTS; rescan of 10k files < 2 s; flat RSS",
             (f"corpus: {full['files']:,} files, {mb:.1f} MB, {full['tokens']:,} tokens, "
              f"{full['chunks']:,} chunks"), ""]
    lines.append(" " * width + "  " + "  ".join(c[0].ljust(w) for c, w in zip(columns, widths)))
    for row, name in enumerate(names, 1):
        lines.append(f"{name:<{width}}  " + "  ".join(
            c[row].ljust(w) for c, w in zip(columns, widths)).rstrip())
    lines += ["", (f"peak RSS, quarter corpus ({small['bytes'] / 1e6:.1f} MB): "
                   f"{small['maxrss_mb']:.0f} MB (+{small['maxrss_mb'] - small['baseline_mb']:.0f} "
                   f"above imports + tokenizer); whole corpus ({mb:.1f} MB): "
                   f"{full['maxrss_mb']:.0f} MB (+{full['maxrss_mb'] - full['baseline_mb']:.0f})"),
              (f"largest worker process (peak RSS): quarter {small.get('worker_maxrss_mb', 0):.0f}"
               f" MB, whole {full.get('worker_maxrss_mb', 0):.0f} MB")]
    return "\n".join(lines)

if __name__ == "__main__":
    main()
