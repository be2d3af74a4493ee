"""What the engine hands back and how it stops: its errors and the answer timer.

Shared by every part of the engine (answering, memory, reflection) and by the CLI and
the TUI, which catch ``EngineError`` and raise ``Stopped`` from a token callback.
"""

from __future__ import annotations

import time


class EngineError(RuntimeError):
    """A problem the user can act on (no data yet, model missing, ...)."""


class Stopped(Exception):
    """Raised from a token callback to stop generation; the partial answer is kept."""


class Timer:
    """Time to first token, total time and decode rate of one generation."""

    def __init__(self):
        self.start = time.perf_counter()
        self.first = None
        self.count = 0

    def token(self):
        self.count += 1
        if self.first is None:
            self.first = time.perf_counter()

    def timings(self) -> dict:
        end = time.perf_counter()
        ttft = (self.first or end) - self.start
        decode = end - (self.first or end)
        rate = (self.count - 1) / decode if self.count > 1 and decode > 0 else None
        return {"ttft_s": round(ttft, 3), "total_s": round(end - self.start, 3),
                "tokens_per_s": round(rate, 2) if rate else None}
