"""Worker processes for large runs: ``_prepared`` yields each file's outcome of
``prepare_file`` in order, from ``python -c`` workers started in the code's folder
(``_Workers``, running ``_worker_main``) or from this process when a run is small, the
tokenizer is a slow one, or a worker died."""

from __future__ import annotations

import gc
import os
from pathlib import Path

from ingest.pipeline.extract import _label, prepare_files
from ingest.stream.tokenizing import _plain_backend

WORKERS_MIN_BYTES = 32 * 1024 * 1024  # below this a run reads in this process
MAX_WORKERS = 2
WORKER_TASK_FILES = 64
WORKER_TASK_BYTES = 1024 * 1024
WORKER_AHEAD_BYTES = 8 * 1024 * 1024  # read but not yet written: bounds memory


def _worker_start(parent: int) -> None:
    """In a worker: die with the parent (even on SIGKILL), leave Ctrl-C to it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the closed pipe ends the worker
        pass
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def _worker_count(workers: int | None, total_bytes: int) -> int:
    if workers is not None:
        return max(0, workers)
    if total_bytes < WORKERS_MIN_BYTES:
        return 0  # starting processes costs more than it saves
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return min(MAX_WORKERS, cores) if cores > 1 else 0


def _prepared(to_read: list, max_file_bytes: int, tokenizer, workers: int | None,
              total_bytes: int, should_stop):
    """Yield (source, info, row, outcome of prepare_file) for ``to_read``, in its order.

    With workers, the files are read, parsed, chunked and tokenized in other processes
    while this one writes to SQLite; results come back in order (the same rows and
    stream whatever the timing) and at most WORKER_AHEAD_BYTES are in flight."""
    def job(source, info, row):
        known = row.sha256 if row is not None and row.status == "live" else None
        return (str(source.root / info.relpath), info.relpath, info.size, info.mtime_ns,
                info.format, max_file_bytes, known, _label(source, info.relpath))

    groups: list[list] = [[]]  # a few files per task: fewer round trips, larger encodes
    size = 0
    for item in to_read:
        if groups[-1] and (len(groups[-1]) >= WORKER_TASK_FILES or size >= WORKER_TASK_BYTES):
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += item[1].size or 0
    count = _worker_count(workers, total_bytes)
    backend = _plain_backend(tokenizer) if tokenizer is not None and count else None
    if not count or (tokenizer is not None and backend is None):  # (a slow tokenizer: here)
        for group in groups:
            if should_stop():
                return
            outcomes = prepare_files([job(*item) for item in group], tokenizer)
            yield from ((*item, outcome) for item, outcome in zip(group, outcomes))
        return
    done = 0  # groups yielded
    with _Workers(count, backend.to_str() if backend is not None else None) as pool:
        for group in groups:
            pool.submit([job(*item) for item in group], sum(i[1].size or 0 for i in group))
            while pool.in_flight_bytes >= WORKER_AHEAD_BYTES or pool.in_flight >= 4 * count:
                outcomes = pool.next_result()
                if outcomes is None or should_stop():
                    break
                yield from ((*item, outcome) for item, outcome in zip(groups[done], outcomes))
                done += 1
            else:
                continue
            break
        while done < len(groups) and pool.in_flight and not should_stop():
            outcomes = pool.next_result()
            if outcomes is None:
                break
            yield from ((*item, outcome) for item, outcome in zip(groups[done], outcomes))
            done += 1
    for group in groups[done:]:  # only when a worker died: the rest in this process
        if should_stop():
            return
        outcomes = prepare_files([job(*item) for item in group], tokenizer)
        yield from ((*item, outcome) for item, outcome in zip(group, outcomes))


class _Workers:
    """Worker processes for ``_prepare_files``: each a fresh ``python -c`` (nothing of this
    process is copied or re-run in it) fed pickled tasks on stdin, answering on stdout in
    order. Tasks go round-robin and results are taken in submission order, so the output
    does not depend on timing. A worker ends when its stdin closes, and dies with this
    process even when it is SIGKILLed (PR_SET_PDEATHSIG). ``next_result`` returns None once
    a worker has failed; the caller then does the rest itself."""

    def __init__(self, count: int, tokenizer_json: str | None):
        import queue
        import subprocess
        import sys
        import threading

        code_root = str(Path(__file__).resolve().parents[2])  # (the folder holding ingest/)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [code_root, *filter(None, [os.environ.get("PYTHONPATH")])]),
            TOKENIZERS_PARALLELISM="false")
        self.processes, self.results, self.threads = [], [], []
        self.submitted = self.taken = 0
        self.sizes: list[int] = []
        self.failed = False
        for _ in range(count):
            process = subprocess.Popen(
                [sys.executable, "-c",
                 f"from ingest.pipeline.workers import _worker_main; _worker_main({os.getpid()})"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=env, cwd=code_root)  # ("-c" puts the cwd first
            # on sys.path: an `ingest` folder where memex was started must not be imported)
            results: queue.Queue = queue.Queue()
            thread = threading.Thread(target=self._drain, args=(process.stdout, results),
                                      daemon=True)
            thread.start()
            self.processes.append(process)
            self.results.append(results)
            self.threads.append(thread)
            self._send(process, tokenizer_json)

    @staticmethod
    def _drain(stdout, results) -> None:
        import pickle

        while True:
            try:
                results.put(pickle.load(stdout))
            except Exception:  # noqa: BLE001  EOF or any broken stream: the worker is gone
                results.put(None)
                return

    def _send(self, process, payload) -> None:
        import pickle

        try:
            pickle.dump(payload, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            process.stdin.flush()
        except OSError:  # it died: found when its result is asked for
            self.failed = True

    @property
    def in_flight(self) -> int:
        return self.submitted - self.taken

    @property
    def in_flight_bytes(self) -> int:
        return sum(self.sizes[self.taken:self.submitted])

    def submit(self, jobs: list[tuple], size: int) -> None:
        self._send(self.processes[self.submitted % len(self.processes)], jobs)
        self.sizes.append(size)
        self.submitted += 1

    def next_result(self) -> list[tuple] | None:
        if self.failed or self.taken >= self.submitted:
            return None
        outcomes = self.results[self.taken % len(self.processes)].get()
        if outcomes is None:
            self.failed = True
            return None
        self.taken += 1
        return outcomes

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc) -> None:
        import subprocess

        for process in self.processes:
            try:
                process.stdin.close()
            except OSError:
                pass
        for process in self.processes:
            try:
                process.wait(timeout=1 if exc[0] is None else 0.01)
            except subprocess.TimeoutExpired:  # busy with a task we no longer want
                process.kill()
                process.wait()
        for thread in self.threads:
            thread.join(timeout=5)


def _worker_main(parent: int) -> None:
    """A worker process: tokenizer definition first, then task after task until EOF."""
    import pickle
    import sys

    _worker_start(parent)
    gc.freeze()  # (the imports' objects: see _old_objects_left_alone)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the results
    tokenizer_json = pickle.load(stdin)
    tokenizer = None
    if tokenizer_json is not None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(tokenizer_json)
    while True:
        try:
            jobs = pickle.load(stdin)
        except EOFError:
            return
        pickle.dump(prepare_files(jobs, tokenizer), stdout,
                    protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()
