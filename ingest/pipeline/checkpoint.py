"""``_Checkpointer``: during a large run, the write-ahead log is copied into the database
file from a second connection in a thread, and cut back when the run ends."""

from __future__ import annotations

import vault
from ingest.store import Store


class _Checkpointer:
    """Copies the write-ahead log into the database file from a second connection in a
    thread, while a large run writes (``start``): SQLite runs a checkpoint without the
    GIL, so it overlaps the writer's work instead of stopping it at every commit that
    finds the log past 1000 pages (about 7 % of the writer's time on a large build).
    The writer's automatic checkpoints are off meanwhile and back on at the end.
    Checkpoints change no content and may run at any moment, so crash safety is as
    before.

    On a first build (an empty stream) the writer also commits with
    ``synchronous = NORMAL`` meanwhile: its commits do not wait for an fsync of the log
    (about 55 ms for a 16 MB batch here); the checkpointing connection, at FULL, syncs
    the log before each copy, and the first commit after the run (FULL again) syncs all
    of it. A killed process loses nothing either way (the OS holds every committed
    write); a power cut could lose the last quarter second of commits, which a rerun
    redoes from the files, and never the stream's consistency: its bytes are synced
    before the commit that counts them, and a longer stream file is cut back on open."""

    INTERVAL_S = 0.25

    def __init__(self, store: Store):
        self.store = store
        self.thread = None
        self.stopping = None

    def __enter__(self) -> _Checkpointer:
        return self

    def start(self, first_build: bool = False) -> None:
        import threading

        if self.thread is not None:
            return
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="memex-checkpoint", daemon=True)
        self.store.db.execute("PRAGMA wal_autocheckpoint = 0")
        if first_build:
            self.store.db.execute("PRAGMA synchronous = NORMAL")
        self.thread.start()

    def _run(self) -> None:
        try:
            conn = vault.connect(self.store.db_path, timeout=60)
        except (vault.VaultError, *vault.database_errors()):
            return
        try:
            conn.execute("PRAGMA synchronous = FULL")
            while not self.stopping.wait(self.INTERVAL_S):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except vault.database_errors():  # busy: the next one catches up
                    pass
        finally:
            conn.close()

    def __exit__(self, *exc) -> None:
        if self.thread is None:
            return
        self.stopping.set()
        self.thread.join()
        self.thread = None
        self.store.db.execute("PRAGMA synchronous = FULL")
        self.store.db.execute("PRAGMA wal_autocheckpoint = 1000")
        # The log grew while readers (the stream phase's) kept it from restarting: copy
        # the rest and cut it to nothing, unless another process is reading right now.
        self.store.db.execute("PRAGMA busy_timeout = 1000")
        try:
            self.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except vault.database_errors():
            pass
        finally:
            self.store.db.execute("PRAGMA busy_timeout = 60000")
