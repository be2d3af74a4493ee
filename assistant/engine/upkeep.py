"""Keeping the memory current without getting in a person's way: `memex watch` extends it
when new text has landed and the machine is otherwise idle, and stops between chunks as
soon as something else wants the CPUs."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

BUSY_SHARE = 0.25  # other processes using more than this share of the CPUs: not idle
CHECK_EVERY_S = 10.0
SAY_EVERY_S = 30.0


class CpuShare:
    """The share of all CPUs that *other* processes used since the last call: from
    /proc/stat less this process's own time (Linux); elsewhere the load average less
    this process's share. This process's own build never makes the machine look busy."""

    def __init__(self):
        self._last = self._sample()

    @staticmethod
    def _sample() -> tuple[float | None, float, float]:
        times = os.times()
        ours = times.user + times.system
        busy = None
        try:
            with open("/proc/stat") as stat:
                values = [int(v) for v in stat.readline().split()[1:9]]
            busy = (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
        return busy, ours, time.monotonic()

    def others(self) -> float:
        now, before = self._sample(), self._last
        self._last = now
        cpus = os.cpu_count() or 1
        wall = max(1e-3, now[2] - before[2])
        ours = (now[1] - before[1]) / wall
        if now[0] is None or before[0] is None:
            try:
                load = os.getloadavg()[0]
            except OSError:
                return 0.0
            return max(0.0, load - ours) / cpus
        return max(0.0, (now[0] - before[0]) / wall - ours) / cpus


class _Spoken:
    """The build's progress lines, passed on at most every ``SAY_EVERY_S`` seconds."""

    def __init__(self, say: Callable[[str], None]):
        self.say, self.last, self.said_at = say, "", 0.0

    def __call__(self, line: str) -> None:
        self.last = line
        if time.monotonic() - self.said_at > SAY_EVERY_S:
            self.say(line)
            self.said_at = time.monotonic()


class _Stopper:
    """A build's ``should_stop``: asked to, or the machine got busy (``interrupted`` set)."""

    def __init__(self, stop, share, busy: float, interrupted: threading.Event):
        self.stop, self.share, self.busy, self.interrupted = stop, share, busy, interrupted

    def __call__(self) -> bool:
        if self.stop.is_set():
            return True
        if self.share.others() > self.busy:
            self.interrupted.set()
            return True
        return False


def keep_memory_current(open_engine: Callable[[], object], stop: threading.Event,
                        say: Callable[[str], None], share: CpuShare | None = None,
                        busy: float = BUSY_SHARE, every: float = CHECK_EVERY_S) -> None:
    """Until ``stop``: every ``every`` seconds, when the stream is ahead of the memory and
    other processes leave the CPUs idle, read the new tokens into the memory a chunk at a
    time (``Engine.refresh``), stopping between chunks when the machine gets busy. The
    engine (and its model) is opened on first need only. ``say`` hears a line at most
    every ``SAY_EVERY_S`` seconds while it works, and when it stops."""
    share = share or CpuShare()
    engine = None
    while not stop.wait(every):
        if share.others() > busy:
            continue
        if engine is None:
            engine = open_engine()
        try:
            if engine.memory_lag() == 0:
                continue
        except Exception as exc:  # noqa: BLE001 — the store went away: said, tried again
            say(f"memory: {exc}")
            continue
        spoken = _Spoken(say)
        interrupted = threading.Event()
        should_stop = _Stopper(stop, share, busy, interrupted)
        try:
            engine.refresh(progress=spoken, should_stop=should_stop)
        except Exception as exc:  # noqa: BLE001 — a failed build is reported, not fatal
            say(f"memory: {exc}")
            continue
        if interrupted.is_set():
            say("memory: paused while the machine is busy")
        elif spoken.last:
            say(f"memory up to date ({engine.memory_info()['tokens']:,} tokens)")
