"""The TUI's engine when a warm server can be used: answers, reflections and the memory's
upkeep run in the server (its model is loaded once for every front end, and the next
`memex ask` finds it warm); the store, the status line and the watcher stay local, and
so does everything when no server can be used."""

from __future__ import annotations

import threading

from assistant.server.client import ServerUnavailable, open_server, request
from assistant.server.protocol import ProtocolError


class WarmEngine:
    """An ``Engine`` (``local``) whose ``answer``, ``reflect``, ``refresh`` and ``warm_up``
    go to the data home's warm server when there is one to trust (started on demand,
    replaced when the settings changed), else to ``local``. Other attributes are the
    local engine's."""

    def __init__(self, local):
        self.local = local
        self._use_server = True

    def __getattr__(self, name):  # (only for names this class does not have)
        return getattr(self.local, name)

    def _server(self):
        """The server's home, checked (and started or replaced) before each request."""
        if not self._use_server:
            return None
        home = open_server(self.local.home)
        if home is None:
            self._use_server = False  # this session answers here from now on
        return home

    def _today(self) -> str:
        return self.local.today.isoformat()

    def warm_up(self, mode: str | None = None) -> threading.Thread:
        def start():
            if self._server() is None:
                self.local.warm_up(mode).join()

        thread = threading.Thread(target=start, name="memex-warm-up", daemon=True)
        thread.start()
        return thread

    def _stream(self, message: dict, on_token=None, on_progress=None) -> dict:
        """The server's final object for ``message``; tokens to ``on_token`` (which may
        raise ``Stopped``: the connection closes, the server stops, ``Stopped`` goes on)."""
        from assistant.engine import EngineError

        home = self._server()
        if home is None:
            raise ServerUnavailable("no warm server")
        replies = request(home, message)
        try:
            for reply in replies:
                if "token" in reply and on_token is not None:
                    on_token(reply["token"])
                elif "progress" in reply and on_progress is not None:
                    on_progress(reply["progress"])
                elif "error" in reply:
                    raise EngineError(reply["error"])
                elif "done" in reply:
                    return reply["done"]
        except ProtocolError as exc:
            raise EngineError(f"{exc}; see serve.log in the data home") from None
        finally:
            replies.close()  # (a Stop closes the socket here: the server stops too)
        raise EngineError("the warm server ended without an answer")

    def answer(self, question, mode=None, history=(), on_token=None):
        from assistant.engine import Answer, Stopped
        from assistant.engine.asking import answer_from_wire

        said: list[str] = []

        def relay(piece: str) -> None:
            if on_token is not None:
                on_token(piece)  # raises Stopped when the person stops the answer
            said.append(piece)

        message = {"op": "answer", "question": question, "mode": mode,
                   "history": [list(pair) for pair in history], "today": self._today()}
        try:
            return answer_from_wire(self._stream(message, on_token=relay))
        except ServerUnavailable:
            return self.local.answer(question, mode, history=history, on_token=on_token)
        except Stopped:
            return Answer(question=question, mode=mode or self.local.config.mode,
                          text="".join(said).strip(), status="partial")

    def reflect(self, start, end, label, on_token=None, month_day=None):
        from assistant.engine import Reflection

        message = {"op": "reflect_range", "start": start and start.isoformat(),
                   "end": end and end.isoformat(), "label": label,
                   "month_day": list(month_day) if month_day else None, "today": self._today()}
        try:
            return Reflection.from_json(self._stream(message, on_token=on_token))
        except ServerUnavailable:
            return self.local.reflect(start, end, label, on_token=on_token, month_day=month_day)

    def refresh(self, progress=None, should_stop=None) -> None:
        stop = should_stop or (lambda: False)

        def relay(line: str) -> None:
            if progress is not None:
                progress(line)
            if stop():
                raise _Leave()

        try:
            self._stream({"op": "refresh"}, on_progress=relay)
        except ServerUnavailable:
            self.local.refresh(progress=progress, should_stop=should_stop)
        except _Leave:
            pass  # closing the connection stops the server's upkeep after its chunk


class _Leave(Exception):
    pass
