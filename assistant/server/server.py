"""The warm server: one background process per data home that keeps the model, the
embedder and the memory loaded, so the next `memex ask` or `memex reflect` starts
answering at once instead of paying the imports and loads again.

It listens on ``serve.sock`` in the data home (see ``protocol``), loads everything in a
background thread as soon as it starts, then uses its idle time to embed the newest
entries' sentences ahead of questions (``Engine.pre_embed``), answers one question at a
time (the engine's lock; a second client waits), and exits after ``idle_s`` without a request, on
``memex serve --stop``, or on SIGTERM. One server per home: a second one started
meanwhile sees the first's lock and leaves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import traceback
from pathlib import Path

from assistant.server.protocol import (
    IDLE_STOP_S,
    ProtocolError,
    identity,
    peer_uid,
    receive,
    send,
    socket_path,
)

SERVE_LOCK = "serve.lock"
LOCK_WAIT_S = 5.0
QUIET_S = 1.0  # idle work waits this long after a request (the next may follow)


class WarmServer:
    def __init__(self, home: Path, idle_s: float = IDLE_STOP_S):
        self.home = Path(home)
        self.idle_s = idle_s
        self.identity = identity(self.home)
        self.stopping = threading.Event()
        self.last_used = time.monotonic()
        self.active = 0  # connections being served (``_count``)
        self._active_lock = threading.Lock()
        self.engine = None
        self.warm = None

    # -- life

    def run(self) -> int:
        """Serve until idle or stopped. Returns 0, or 3 when another server holds the home."""
        import fcntl

        lock = os.open(self.home / SERVE_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # A server that was just told to stop holds it for a moment more; one
                # that still listens is alive, and this one is not needed.
                if socket_path(self.home).exists() or time.monotonic() > deadline:
                    os.close(lock)
                    return 3
                time.sleep(0.05)
        try:
            listener = self._listen()
            try:
                self._start_engine()
                self._serve(listener)
            finally:
                listener.close()
                with contextlib.suppress(OSError):
                    socket_path(self.home).unlink()
        finally:
            os.close(lock)
        return 0

    def _listen(self) -> socket.socket:
        path = socket_path(self.home)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead server's socket (the lock says none is alive)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600: the owner alone may connect
        try:
            listener.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        listener.listen(8)
        listener.settimeout(1.0)
        return listener

    def _start_engine(self) -> None:
        from assistant.config import load_config
        from assistant.engine import Engine

        config = load_config(self.home)
        self.engine = Engine(self.home, config)
        self.warm = self.engine.warm_up(config.mode)
        threading.Thread(target=self._pre_embed, name="memex-pre-embed", daemon=True).start()

    def _pre_embed(self) -> None:
        """Once loaded, embed the newest entries' sentences while nobody asks (a question
        waits one batch at most), so later questions find them ready."""
        self.warm.join()

        def someone_asks() -> bool:  # a request now or a moment ago: the CPUs are its
            return self.active > 0 or time.monotonic() - self.last_used < QUIET_S

        try:
            self.engine.pre_embed(should_stop=self.stopping.is_set, should_wait=someone_asks)
        except Exception:  # noqa: BLE001 — an optimisation: answers embed what they need
            traceback.print_exc()

    def _serve(self, listener: socket.socket) -> None:
        with contextlib.suppress(ValueError):  # (not the main thread: tests)
            signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        while not self.stopping.is_set():
            if not self.active and time.monotonic() - self.last_used > self.idle_s:
                break
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                raise
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    # -- one connection

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            uid = peer_uid(conn)
            if uid is not None and uid != os.getuid():
                return  # another user: not a word
            stream = conn.makefile("rwb")
            self._count(+1)
            try:
                request = receive(stream)
                self._answer_request(request, stream)
            except (ProtocolError, OSError):
                pass  # the client left: nothing to tell it
            except Exception as exc:  # noqa: BLE001 — told to the client, the rest to the log
                traceback.print_exc()
                with contextlib.suppress(OSError):
                    send(stream, {"error": f"the warm server failed: {exc} (see serve.log)"})
            finally:
                self._count(-1)
                self.last_used = time.monotonic()
                with contextlib.suppress(OSError):
                    stream.close()

    def _count(self, step: int) -> None:
        with self._active_lock:
            self.active += step

    def _answer_request(self, request: dict, stream) -> None:
        op = request.get("op")
        if op == "hello":
            send(stream, {"ok": True, "identity": self.identity, "pid": os.getpid(),
                          "ready": self.warm is not None and not self.warm.is_alive()})
        elif op == "stop":
            send(stream, {"ok": True, "pid": os.getpid()})
            self.stopping.set()
        elif op == "ask":
            self._ask(request, stream)
        elif op == "reflect":
            self._reflect(request, stream)
        elif op == "answer":
            self._answer(request, stream)
        elif op == "reflect_range":
            self._reflect_range(request, stream)
        elif op == "refresh":
            self._refresh(request, stream)
        else:
            send(stream, {"error": f"unknown request {op!r}"})

    def _streamer(self, stream):
        from assistant.engine import Stopped

        def on_token(piece: str) -> None:
            try:
                send(stream, {"token": piece})
            except OSError:  # the client pressed Ctrl-C: the answer stops, kept partial
                raise Stopped("the client left") from None
        return on_token

    def _today(self, given: str | None):
        """A request's today: the one it names, else the settings' (a fixed date), else
        the real one (a server may live past midnight)."""
        from datetime import date

        if given:
            return date.fromisoformat(given)
        return None if self.engine.config.today else date.today()

    def _ask(self, request: dict, stream) -> None:
        from assistant.engine import EngineError, Stopped
        from assistant.engine.asking import answer_payload, ask_in_conversation

        if self.engine.entry_count() == 0:
            send(stream, {"error": "no notes yet: add a folder first with `memex add PATH`"})
            return
        try:
            answer = ask_in_conversation(
                self.engine, request["question"], request.get("mode"),
                resume=bool(request.get("continue")), on_token=self._streamer(stream),
                today=self._today(request.get("today")))
        except (EngineError, Stopped) as exc:
            send(stream, {"error": str(exc)})
            return
        send(stream, {"done": answer_payload(answer)})

    def _reflect(self, request: dict, stream) -> None:
        from assistant.engine import EngineError
        from assistant.engine.reflection import reflect_on

        if self.engine.entry_count() == 0:
            send(stream, {"error": "no notes yet: add a folder first with `memex add PATH`"})
            return
        reflection = self._as_of(request, stream, (EngineError, ValueError), lambda: reflect_on(
            self.engine, request.get("period") or {}, on_token=self._streamer(stream),
            on_label=lambda label: send(stream, {"label": label})))
        if reflection is not None:
            send(stream, {"done": reflection.to_json()})

    def _as_of(self, request: dict, stream, errors: tuple, work):
        """``work()`` under the engine's lock, as of the request's today; an error of
        ``errors`` goes to the client and None comes back."""
        with self.engine.lock:
            usual = self.engine.today
            self.engine.today = self._today(request.get("today")) or usual
            try:
                return work()
            except errors as exc:
                send(stream, {"error": str(exc)})
                return None
            finally:
                self.engine.today = usual


    # -- for the TUI: an answer, a reflection on given dates, the memory's upkeep; the
    # conversation is the TUI's own to record

    def _answer(self, request: dict, stream) -> None:
        from assistant.engine import EngineError
        from assistant.engine.asking import answer_to_wire

        history = [tuple(pair) for pair in request.get("history", [])]
        answer = self._as_of(request, stream, (EngineError,), lambda: self.engine.answer(
            request["question"], request.get("mode"), history=history,
            on_token=self._streamer(stream)))
        if answer is not None:
            with contextlib.suppress(OSError):  # a client that pressed Stop has left
                send(stream, {"done": answer_to_wire(answer)})

    def _reflect_range(self, request: dict, stream) -> None:
        from datetime import date

        from assistant.engine import EngineError

        day = lambda text: date.fromisoformat(text) if text else None
        month_day = request.get("month_day")
        reflection = self._as_of(request, stream, (EngineError, ValueError),
                                 lambda: self.engine.reflect(
                                     day(request.get("start")), day(request.get("end")),
                                     request["label"], on_token=self._streamer(stream),
                                     month_day=tuple(month_day) if month_day else None))
        if reflection is not None:
            send(stream, {"done": reflection.to_json()})

    def _refresh(self, request: dict, stream) -> None:
        """The memory's upkeep (``Engine.refresh``), its progress lines streamed; it stops
        between chunks when the client leaves."""
        gone = threading.Event()

        def progress(line: str) -> None:
            try:
                send(stream, {"progress": line})
            except OSError:
                gone.set()

        try:
            self.engine.refresh(progress=progress, should_stop=gone.is_set)
        except Exception as exc:  # noqa: BLE001 — reported to the client, the server lives on
            send(stream, {"error": str(exc)})
            return
        send(stream, {"done": {}})


def serve(home: Path, idle_s: float = IDLE_STOP_S) -> int:
    return WarmServer(home, idle_s).run()


def log_encrypted(home: Path) -> None:
    """Send this process's output (fds 1 and 2: tracebacks, warnings) to ``serve.log``
    kept encrypted like the rest of the home: a pipe read by a thread that appends each
    piece as authenticated chunks. At exit the pipe is closed and drained."""
    import atexit
    import sys

    import vault
    from assistant.server.protocol import LOG_NAME

    log = vault.files_for(Path(home) / LOG_NAME).open(Path(home) / LOG_NAME)
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)

    def drain() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while piece := pipe.read(1 << 16):
                with contextlib.suppress(Exception):  # a log must never stop the server
                    log.append(piece)

    thread = threading.Thread(target=drain, name="memex-log", daemon=True)
    thread.start()

    def close() -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        thread.join(timeout=5)

    atexit.register(close)
