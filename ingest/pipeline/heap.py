"""The run's process memory: the cyclic garbage collector kept off the objects that
existed before the run, and freed C heap pages given back to the system after each
batch."""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def _old_objects_left_alone():
    """Keep the cyclic garbage collector off the objects that existed before the run
    (the tokenizer, transformers and torch: hundreds of thousands) for its duration:
    the run's many rows and arrays would otherwise set off full collections that walk
    them all again and again (about 7 % of a large build's CPU time)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


_malloc_trim = None


def _give_back_freed_memory() -> None:
    """Return the C heap's free pages to the system after a batch (glibc keeps them, and
    the holes left by one batch's many strings make the process grow run after run)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)
