"""Progress reporting for long jobs, independent of where it is shown.

The pipeline calls ``phase(name, total, unit)``, ``advance(n, **counters)``,
``done()`` and ``note(text)``. ``RichProgress`` draws bars on a terminal,
``PlainProgress`` prints a line per phase (and every few seconds) when output is
piped, ``NullProgress`` stays quiet. A TUI can pass its own object with the same
four methods.
"""

from __future__ import annotations

import sys
import time


class NullProgress:
    def phase(self, name: str, total: float | None = None, unit: str = "files") -> None:
        pass

    def advance(self, amount: float = 1, **counters) -> None:
        pass

    def done(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


def _human(value: float, unit: str) -> str:
    if unit == "bytes":
        for suffix in ("B", "KB", "MB", "GB"):
            if value < 1024 or suffix == "GB":
                return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
            value /= 1024
    return f"{int(value):,} {unit}"


class PlainProgress(NullProgress):
    """One line when a phase starts and ends, and at most one every ``every`` seconds."""

    def __init__(self, stream=None, every: float = 5.0):
        self.stream = stream or sys.stderr
        self.every = every
        self._name = None

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def phase(self, name, total=None, unit="files"):
        self._name, self._total, self._unit = name, total, unit
        self._count, self._counters = 0, {}
        self._start = self._last = time.monotonic()
        goal = f" ({_human(total, unit)})" if total else ""
        self._print(f"{name}: started{goal}")

    def _line(self) -> str:
        extra = "".join(f", {_human(v, k)}" for k, v in self._counters.items())
        of = f"/{_human(self._total, self._unit)}" if self._total else f" {self._unit}"
        count = _human(self._count, self._unit).split(" ")[0] if self._total else int(self._count)
        return f"{self._name}: {count}{of}{extra}"

    def advance(self, amount=1, **counters):
        if self._name is None:
            return
        self._count += amount
        for key, value in counters.items():
            self._counters[key] = self._counters.get(key, 0) + value
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._print(self._line())

    def done(self):
        if self._name is None:
            return
        seconds = time.monotonic() - self._start
        self._print(f"{self._line()} (done in {seconds:.1f} s)")
        self._name = None

    def note(self, message):
        self._print(message)


class RichProgress(NullProgress):
    """rich progress bars on a terminal (one bar per phase, with its counters)."""

    def __init__(self, console=None):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[counters]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
        self.progress.start()
        self._task = None
        self._unit = "files"
        self._counters: dict[str, float] = {}

    def _counter_text(self) -> str:
        return "  ".join(_human(v, k) for k, v in self._counters.items())

    def phase(self, name, total=None, unit="files"):
        self.done()
        self._unit, self._counters = unit, {}
        self._task = self.progress.add_task(f"{name} ({unit})", total=total, counters="")

    def advance(self, amount=1, **counters):
        if self._task is None:
            return
        for key, value in counters.items():
            self._counters[key] = self._counters.get(key, 0) + value
        self.progress.update(self._task, advance=amount, counters=self._counter_text())

    def done(self):
        if self._task is not None:
            task = self.progress.tasks[-1]
            if task.total is None:
                self.progress.update(self._task, total=task.completed)
            self.progress.stop_task(self._task)
            self._task = None

    def note(self, message):
        self.progress.console.print(message)

    def close(self):
        self.done()
        self.progress.stop()


def progress_for_terminal(console=None):
    """Rich bars when stderr is a terminal, plain lines otherwise."""
    from rich.console import Console

    console = console or Console(stderr=True)
    return RichProgress(console) if console.is_terminal else PlainProgress()
