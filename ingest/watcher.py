"""Watching sources: watchdog events, debounced, plus a periodic full rescan.

Events only say *where* to look: each burst of events (quiet for ``debounce``
seconds, or at most ``max_delay`` after the first) becomes one incremental
ingest of the touched paths, and that pass compares disk with the store the
same way `memex ingest` does. So an editor's atomic save (temp file + rename),
vim's backup + rename, moves in and out of the tree, deletes and whole folders
that vanish and come back all end as the right documents, whatever the order of
events. Every ``rescan_every`` seconds a full rescan (a (size, mtime) snapshot
diff against the store) catches events the OS dropped, and source roots that
disappear are re-watched when they come back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from ingest.pipeline import runner
from ingest.pipeline.report import IngestReport
from ingest.recovery import open_store
from ingest.store import Store

_IGNORED_EVENTS = {"opened", "closed_no_write"}


class _Collector(FileSystemEventHandler):
    def __init__(self, watcher: Watcher, root: str):
        self.watcher = watcher
        self.root = root

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _IGNORED_EVENTS:
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        self.watcher._note([os.fsdecode(p) for p in paths if p], self.root)


class Watcher:
    """Keeps the store equal to the sources until stopped.

    ``run(stop_event)`` blocks (the CLI); ``start()``/``stop()`` run it in a
    thread (the TUI). The watcher opens its own store connection.
    ``on_pass(report)`` is called after each ingest pass that changed something.
    """

    def __init__(self, home: Path | str, tokenizer, *, embed: bool = False, embedder=None,
                 debounce: float = 1.0, max_delay: float = 10.0, rescan_every: float = 300.0,
                 max_file_bytes: int | None = None, progress=None,
                 on_pass: Callable | None = None, on_error: Callable | None = None):
        self.home = Path(home)
        self.tokenizer = tokenizer
        self.embed = embed
        self.embedder = embedder
        self.debounce = debounce
        self.max_delay = max_delay
        self.rescan_every = rescan_every
        self.max_file_bytes = max_file_bytes
        self.progress = progress
        self.on_pass = on_pass
        self.on_error = on_error
        self.passes = 0
        self.last_report: IngestReport | None = None
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._first_event = 0.0
        self._last_event = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._home_real = os.path.realpath(self.home)

    # -- events -----------------------------------------------------------
    def _note(self, paths: list[str], root: str) -> None:
        kept = []
        for path in paths:
            if path == self._home_real or path.startswith(self._home_real + os.sep):
                continue
            rel = os.path.relpath(path, root)
            if rel.startswith(".."):
                continue
            if any(part.startswith(".") and part not in (".",) for part in rel.split(os.sep)):
                continue  # hidden files and folders (.git, .obsidian, editor temp files)
            kept.append(path)
        self._mark_dirty(kept)

    def _mark_dirty(self, kept: list[str]) -> None:
        if not kept:
            return
        now = time.monotonic()
        with self._lock:
            if not self._dirty:
                self._first_event = now
            self._dirty.update(kept)
            self._last_event = now

    def _take_due(self) -> list[str] | None:
        now = time.monotonic()
        with self._lock:
            if not self._dirty:
                return None
            if now - self._last_event < self.debounce and now - self._first_event < self.max_delay:
                return None
            paths, self._dirty = sorted(self._dirty), set()
            return paths

    # -- the loop ---------------------------------------------------------
    def _pass(self, store: Store, scope, stop: threading.Event) -> None:
        try:
            report = runner.run(store, self.tokenizer, scope=scope, embed=self.embed,
                                embedder=self.embedder, max_file_bytes=self.max_file_bytes,
                                progress=self.progress, should_stop=stop.is_set)
        except Exception as exc:  # keep watching; say what went wrong
            if self.on_error:
                self.on_error(exc)
            return
        self.passes += 1
        self.last_report = report
        if self.on_pass and report.changed_anything:
            self.on_pass(report)

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or self._stop
        store = open_store(self.home, self.tokenizer)
        observer = Observer()
        watches: dict[str, object] = {}
        try:
            self._pass(store, None, stop)
            observer.start()
            last_rescan = last_root_check = time.monotonic()
            self._sync_watches(store, observer, watches, initial=True)
            self.ready.set()
            while not stop.is_set():
                stop.wait(min(0.1, self.debounce / 4 or 0.1))
                now = time.monotonic()
                if now - last_root_check >= 1.0:
                    last_root_check = now
                    self._sync_watches(store, observer, watches)
                if now - last_rescan >= self.rescan_every:
                    with self._lock:
                        self._dirty.clear()
                    self._pass(store, None, stop)
                    last_rescan = time.monotonic()
                    continue
                due = self._take_due()
                if due:
                    self._pass(store, due, stop)
        finally:
            self.ready.set()
            observer.stop()
            try:
                observer.join(timeout=5)
            except RuntimeError:
                pass
            store.close()

    def _sync_watches(self, store: Store, observer, watches: dict, initial: bool = False) -> None:
        """Watch every source root that exists; re-watch roots that came back."""
        roots = {str(s.root) for s in store.sources()}
        for root in list(watches):
            if root not in roots or not os.path.isdir(root):
                try:
                    observer.unschedule(watches.pop(root))
                except (KeyError, ValueError, OSError):
                    watches.pop(root, None)
        for root in roots:
            if root in watches or not os.path.isdir(root):
                continue
            try:
                watches[root] = observer.schedule(_Collector(self, root), root, recursive=True)
            except OSError:
                continue
            if not initial:  # it may have changed while unwatched: look at all of it
                self._mark_dirty([root])

    def start(self) -> threading.Thread:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="memex-watcher",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
