"""The LongNet memory behind the answers (methods of ``Engine``): loading it, catching it
up with the stream before an answer, background upkeep for the TUI, and generating
against it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

from assistant.engine.answering import Answer

# Memory behind the stream by at most this many tokens is caught up before answering;
# more than that is left to `memex memory build` and the answer says how far behind.
CATCH_UP_LIMIT = 4096
SAVE_EVERY_S = 60.0
CATCH_UP_CHUNK = 2048  # stream tokens read into the memory per step
# Tokens of retrieved passages whose stored rows a memory answer reads (``recall_spans``).
RECALL_TOKENS = 1024
MEMORY_LOCK = "memory.lock"  # in the data home: held by whoever extends the saved memory


PINNED = "pinned"  # the stamp of a memory handed in (``use_longnet``): never reloaded


class MemoryBusy(RuntimeError):
    """Another memex process is extending this data home's memory."""


def memory_parts(memory, config, spans, isolate_window: bool, far_levels: str,
                 reader: str) -> dict:
    """What of the memory an answer reads, for ``ask --json``: the window (the history's
    last tokens, the recalled rows of retrieved passages, or none: an isolated turn), the
    far levels (open or shut), the sinks and the reader."""
    tokens = memory.tokens
    parts = {"history_tokens": tokens, "far_levels": far_levels, "reader": reader,
             "sinks": min(config.attention_sinks, tokens)}
    if spans is not None:
        parts["window"] = "recalled"
        parts["recalled"] = [dict(piece) for piece in spans]
        parts["recalled_tokens"] = sum(piece["end"] - piece["start"] for piece in spans)
    elif isolate_window:
        parts["window"] = "none"
    else:
        parts["window"] = "last_tokens"
        parts["window_tokens"] = min(tokens, config.local_window or tokens)
    return parts


def refresh_progress(position: int, total: int, read: int, seconds: float) -> str:
    """The status bar's line while the memory is built in the background: where it stands,
    its speed and the time left (issue 19: a person sees that it is under way and when the
    memory will hold everything)."""
    from assistant.engine.memory_build import duration_text

    percent = 100 * position / total if total else 100
    line = f"memory {percent:.0f}% ({position:,}/{total:,} tokens)"
    if read > 0 and seconds > 0:
        rate = read / seconds
        line += f" · {rate:,.0f} tok/s · {duration_text((total - position) / rate)} left"
    return line


class MemoryMixin:
    """The memory's life inside an engine; uses ``self.longnet_model`` and ``self.store``."""

    @contextlib.contextmanager
    def memory_writer(self, wait: bool = True):
        """Hold the right to extend the saved memory: one process at a time (a build, an
        answer catching up, the TUI's upkeep, the warm server), since two appending rows to
        one file would misalign them. Re-entrant within this engine; ``MemoryBusy`` when
        another process holds it and ``wait`` is False."""
        import fcntl

        if not self._writer_lock.acquire(blocking=wait):
            raise MemoryBusy("another memex task is extending the memory")
        try:
            if self._writer_fd is not None:  # this engine holds it already
                yield
                return
            fd = os.open(self.home / MEMORY_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    raise MemoryBusy("another memex process is extending the memory") from None
                self._writer_fd = fd
                # Whatever that process saved is read again before this one goes on.
                self.reload_memory_if_changed()
                try:
                    yield
                finally:
                    self._writer_fd = None
            finally:
                os.close(fd)  # closing releases the lock
        finally:
            self._writer_lock.release()

    def _saved_stamp(self):
        try:
            st = (self.memory_dir / "memory.json").stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload_memory_if_changed(self) -> bool:
        """Drop the loaded memory when another process saved a newer one since (a build next
        to a long-lived chat or warm server); the next use loads that one."""
        with self._load_lock:
            if self._memory is None or self._memory_stamp == PINNED:
                return False
            if self._saved_stamp() == self._memory_stamp:
                return False
            self._memory = None
            return True

    def load_memory(self):
        """The saved memory (or a fresh one), loaded once."""
        with self._load_lock:
            if self._memory is None:
                from longnet import Memory

                model = self.longnet_model
                # Answers read in the engine's dtype whatever a build computed in (a
                # bfloat16 build is saved in 16 bits and read back as float32 here).
                dtype = self.memory_dtype or self.dtype
                if (self.memory_dir / "memory.json").is_file():
                    memory = Memory.load(self.memory_dir, model, dtype=dtype)
                else:
                    memory = model.memory(dtype=dtype)
                if self.config.memory_rows and memory.rows is None and model.config.local_window:
                    # every token read from now on keeps its rows (recall in answers)
                    memory.keep_rows(self.memory_dir)
                elif not self.config.memory_rows and memory.rows is not None:
                    memory.rows.path.unlink(missing_ok=True)
                    memory.rows = None
                self._memory = memory
                self._memory_stamp = self._saved_stamp()
        return self._memory

    def memory_lag(self) -> int:
        return max(0, self.stream_tokens() - self.memory_info()["tokens"])

    def _generate_memory(self, prompt_ids: list[int], emit, answer: Answer,
                         isolate_window: bool = False, choose=None, recall=None):
        """Generate against the memory. ``recall``: the spans (``recall_spans``) whose
        stored rows the turn reads in place of the history's last tokens, when the memory
        keeps rows for them; ``answer.memory`` says what the answer read."""
        if self.memory_needs_rebuild():
            answer.notes.append("the memory holds text that was since forgotten or compacted and "
                                "is not used until `memex memory build` rebuilds it")
            memory = self.longnet_model.memory()
        else:
            self.reload_memory_if_changed()
            try:
                memory = self.load_memory()
            except (ValueError, OSError) as exc:  # made by another model, config or version
                answer.notes.append(f"the saved memory cannot be used ({exc}); "
                                    "run `memex memory rebuild`")
                memory = self.longnet_model.memory()  # this answer only
                memory.unusable = True
            lag = self.stream_tokens() - memory.stream_offset
            if 0 < lag <= CATCH_UP_LIMIT and not getattr(memory, "unusable", False):
                try:
                    with self.memory_writer(wait=False):
                        memory = self.load_memory()  # (read again if a build saved one)
                        self.catch_up(memory)
                    lag = 0
                except MemoryBusy:  # a build is under way: it reads these tokens soon
                    lag = self.stream_tokens() - memory.stream_offset
            answer.memory_lag = max(0, lag)
            if lag > 0:
                answer.notes.append(f"the memory is {lag:,} tokens behind your notes; "
                                    "run `memex memory build` to bring it up to date")

        # Untrained far levels only perturb a hybrid turn's reading of its notes (with
        # them, 55 of the 114 example answers changed and 6 fewer were right): until
        # `memex train` has taught them, the hybrid turn reads its notes as the plain model.
        spans = None
        if recall is not None and getattr(memory, "rows", None) is not None:
            # (none covered, as after a distributed build: the window reads the history)
            spans = [piece for piece in recall
                     if memory.rows.covers(piece["start"], piece["end"])] or None
        # Recalled rows are read with the far levels shut, with a reader or without (as the
        # reader learns to read them: ``longnet.training.turn_loss``); they would only blur
        # what search found.
        shut = spans is not None or (isolate_window and not self._far_levels_trained)
        answer.memory = memory_parts(memory, self.longnet_model.config, spans, isolate_window,
                                     far_levels="shut" if shut else "open",
                                     reader=self._reader_in_use())
        recall = None if spans is None else [(piece["start"], piece["end"]) for piece in spans]
        if recall is not None and self.recall_as == "text":
            # The same passages read again as the turn's own text (bench/recall.py's
            # baseline for the rows): every token of them goes through the model.
            text = [int(t) for a, b in recall for t in self.store.stream.read(a, b)]
            prompt_ids, recall, isolate_window = text + list(prompt_ids), None, True
            answer.memory["window"] = "recalled_text"
        with self.longnet_model.far_levels_shut() if shut else contextlib.nullcontext():
            memory.generate(prompt_ids, max_new_tokens=self.config.max_new_tokens,
                            temperature=self.config.temperature, top_p=self.config.top_p,
                            stop_ids=sorted(emit.stop_ids), isolate_window=isolate_window,
                            on_token=lambda token_id: not emit(int(token_id)),  # False stops
                            choose=choose, decode_weights=self.config.decode_weights,
                            recall=recall)

    def catch_up(self, memory=None, chunk: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> int:
        """Feed the stream's new tokens into the memory and save it. Returns tokens added.
        Holds the memory writer's lock (waits for another process's build to end)."""
        with self.memory_writer():
            return self._catch_up(memory, chunk, progress, should_stop)

    def _catch_up(self, memory, chunk, progress, should_stop) -> int:
        memory = memory or self.load_memory()
        chunk = chunk or CATCH_UP_CHUNK
        stream = self.store.stream
        total = len(stream)
        before = memory.stream_offset
        last_save = time.monotonic()
        try:
            while memory.stream_offset < total:
                if should_stop and should_stop():
                    break
                start = memory.stream_offset
                end = min(total, start + chunk)
                memory.append(stream.read(start, end), return_logits=False, stream_offset=end)
                if progress:
                    progress(end, total)
                if time.monotonic() - last_save > SAVE_EVERY_S:  # a kill loses little
                    self.save_memory(memory)
                    last_save = time.monotonic()
        finally:
            # Ctrl-C or a stop request keeps everything read so far.
            self.save_memory(memory)
        return memory.stream_offset - before

    def refresh(self, progress: Callable[[str], None] | None = None,
                should_stop: Callable[[], bool] | None = None, chunk: int = 1024) -> None:
        """Background upkeep for the TUI: ingest changed files, then feed new stream tokens
        into the memory a chunk at a time, letting answers go first between chunks."""
        say = progress or (lambda text: None)
        try:
            with self.memory_writer(wait=False):
                self._refresh(say, should_stop or (lambda: False), chunk)
        except MemoryBusy:
            say("memory: another memex process is building it")

    def _refresh(self, say, stop, chunk: int) -> None:
        from assistant.engine.memory_build import (
            duration_text,
            estimated_build_seconds,
            record_build_rate,
        )

        with self.lock:
            reason = self.memory_needs_rebuild()
            if reason:
                say(f"memory needs a rebuild ({reason}): run `memex memory rebuild`")
                return
            memory = self.load_memory()
            first, total = memory.stream_offset, self.stream_tokens()
        if first < total:  # an ETA before the first chunk: the last build's speed
            seconds, _ = estimated_build_seconds(self.home, total - first)
            about = f", about {duration_text(seconds)}" if seconds is not None else ""
            say(f"memory: reading {total - first:,} tokens{about}")
        began = last_save = time.monotonic()
        try:
            while not stop():
                with self.lock:
                    total = self.stream_tokens()
                    start = memory.stream_offset
                    if start >= total:
                        break
                    end = min(total, start + chunk)
                    memory.append(self.store.stream.read(start, end), return_logits=False,
                                  stream_offset=end)
                say(refresh_progress(end, total, end - first, time.monotonic() - began))
                if time.monotonic() - last_save > SAVE_EVERY_S:
                    with self.lock:
                        self.save_memory(memory)
                    last_save = time.monotonic()
        finally:
            with self.lock:
                self.save_memory(memory)
            record_build_rate(self.home, memory.stream_offset - first,
                              time.monotonic() - began, self.device,
                              str(memory.dtype).removeprefix("torch."))

    def start_watcher(self, say: Callable[[str], None], on_change: Callable[[], None] | None = None):
        """ingest's watcher in a background thread (its own store connection); its
        progress goes to ``say`` as short lines. Returns the watcher (``.stop()``)."""
        from ingest import Watcher
        from ingest.progress import NullProgress

        class Lines(NullProgress):
            def __init__(self):
                self.name, self.total, self.count = "", None, 0

            def phase(self, name, total=None, unit="files"):
                self.name, self.total, self.count, self.unit = name, total, 0, unit
                say(f"{name}…")

            def advance(self, amount=1, **counters):
                self.count += amount
                of = f"/{self.total:,.0f}" if self.total else ""
                say(f"{self.name} {self.count:,.0f}{of} {self.unit}")

            def done(self):
                say("")

            def note(self, message):
                say(message)

        watcher = Watcher(self.home, self.tokenizer, embed=self.config.embeddings,
                          progress=Lines(), on_pass=lambda report: on_change and on_change(),
                          on_error=lambda exc: say(f"watcher: {exc}"))
        watcher.start()
        return watcher

    def save_memory(self, memory=None):
        memory = memory or self._memory
        if memory is not None:
            memory.save(self.memory_dir)
            if memory is self._memory:
                self._memory_stamp = self._saved_stamp()
