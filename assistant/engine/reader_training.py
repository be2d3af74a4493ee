"""`memex train --reader`: the reader learns to read the memory the base weights wrote.

LongMem's split (issue 18): the memory in the data home is the frozen model's and stays
as it is; a reader (``longnet.reader``) learns, one turn per example, to answer from it.
The turns come from the user's own notes, no labels asked: "How does this sentence I wrote
on 14 March 2023 go on: “<its first half>”" → its second half, for sentences of entries the
memory holds; when the memory keeps rows, the turn reads its entry's stored rows in the
window, as memory answers read the rows of what search found. One sentence in ten (chosen by its hash, so always the same ones) is a probe,
never trained on: the share of probes answered word for word is measured before and after.
No evaluation question is ever a turn. Training is incremental: a later run goes on from
the last reader for as many more examples, with turns from every entry the memory holds
(new entries and replay of the old). The reader lives in ``reader/`` of the data home.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np

READER_DIRNAME = "reader"
RUN_DIRNAME = "run"  # the resumable checkpoint of the run in progress
PROBE_EVERY = 10  # one sentence in ten is a probe
ANSWER_TOKENS = 24
PROBES_MEASURED = 16
DEFAULT_STEPS = 200  # ~10 minutes on 2 CPU cores (bench/reader.py: 2–3 s per example)
DEFAULT_LR = 1e-4


def reader_dir(home) -> Path:
    return Path(home) / READER_DIRNAME


def recall_turns(store, tokenizer, memory_tokens: int, today=None, rows=None):
    """(training turns, probe turns) from the sentences of the entries the memory holds.
    With the memory's ``rows`` (``Memory.keep_rows``), a turn reads its entry's stored rows
    recalled into the window, as a memory answer reads what search found (``Turn.recall``)."""
    from assistant.engine import prompting
    from longnet.training import Turn

    train, probes = [], []
    for entry in store.entries_between():
        if not entry.date or entry.token_end is None or entry.token_end > memory_tokens:
            continue
        day = prompting.spoken_date(entry.date)
        for sentence in prompting.split_sentences(entry.text or ""):
            words = sentence.split()
            if len(words) < 8:
                continue
            half = len(words) // 2
            question = (f"How does this sentence I wrote on {day} go on: "
                        f"“{' '.join(words[:half])}”")
            messages = prompting.answer_messages(question, None, (), None)
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                   tokenize=True)
            if hasattr(prompt, "keys"):
                prompt = prompt["input_ids"]
            answer = tokenizer.encode(" ".join(words[half:]),
                                      add_special_tokens=False)[:ANSWER_TOKENS]
            recall = None
            if rows is not None and entry.token_start is not None \
                    and rows.covers(entry.token_start, entry.token_end):
                recall = [(entry.token_start, entry.token_end)]
            turn = Turn(np.asarray(list(prompt)), np.asarray(answer), "cloze", recall=recall)
            digest = int(hashlib.sha1(sentence.encode()).hexdigest(), 16)
            (probes if digest % PROBE_EVERY == 0 else train).append(turn)
    return train, probes


def run_reader_training(home, steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                        resume: bool = True, say=None, progress=None) -> dict:
    """Train (or go on training) the reader of ``home``'s memory for ``steps`` more
    examples; returns the saved reader's metadata. Raises TrainingInterrupted on Ctrl-C
    (checkpoint saved; the next run goes on)."""
    import ingest
    from assistant.config import load_config
    from assistant.engine.results import EngineError
    from assistant.engine.trained import load_base_model
    from assistant.home import model_cache_dir
    from longnet import Memory
    from longnet.reader import (
        ReaderError,
        add_reader,
        load_reader,
        read_reader_meta,
        reader_parameters,
        save_reader,
    )
    from longnet.training import answer_accuracy, train_reader
    from longnet.weights import load_tokenizer

    say = say or (lambda text: None)
    home = Path(home)
    config = load_config(home)
    if not (home / "memory" / "memory.json").is_file():
        raise EngineError("the memory is not built yet: run `memex memory build` first (the "
                          "reader learns to read it)")
    model = load_base_model(config, device="cpu")
    try:
        memory = Memory.load(home / "memory", model)
    except (ValueError, OSError) as error:
        raise EngineError(f"the memory cannot be read ({error}): run `memex memory rebuild`") \
            from None
    folder = reader_dir(home)
    previous = read_reader_meta(folder)
    done_before = 0
    if previous is not None:
        try:
            load_reader(model, folder)  # go on from the last reader
            for parameter in reader_parameters(model).values():
                parameter.requires_grad_(True)
            done_before = int(previous.get("examples_seen", 0))
        except ReaderError as error:
            say(f"the old reader is not used ({error}): a new one starts")
            model = load_base_model(config, device="cpu")
            memory = Memory.load(home / "memory", model)
            add_reader(model)
    else:
        add_reader(model)
    store = ingest.open_store(home)
    try:
        tokenizer = load_tokenizer(config.model, model_cache_dir())
        train, probes = recall_turns(store, tokenizer, memory.stream_offset, rows=memory.rows)
    finally:
        store.close()
    if not train:
        raise EngineError("the memory holds no dated entry with a sentence of eight words or "
                          "more to learn from")
    probes = probes[:PROBES_MEASURED]
    say(f"{len(train):,} turns from your notes, {len(probes)} probes held out; "
        f"{steps} examples")
    before = answer_accuracy(memory, probes) if probes else None

    def example(rng: np.random.Generator):
        return memory, train[int(rng.integers(len(train)))]

    started = time.perf_counter()
    # The run's checkpoint (seeded by the examples seen before it) lets an interrupted run
    # go on; once the reader is saved it is removed, and a later run starts from the reader.
    result = train_reader(model, example, steps, folder / RUN_DIRNAME, lr=lr,
                          checkpoint_every=10, resume=resume, progress=progress,
                          seed=done_before)
    after = answer_accuracy(memory, probes) if probes else None
    meta = {"examples_seen": done_before + result.steps, "trained_up_to": memory.stream_offset,
            "wall_s": round((previous or {}).get("wall_s", 0.0) + time.perf_counter() - started, 1),
            "examples_per_s": (round(result.examples_per_s, 3) if result.examples_per_s
                               else None),
            "lr": lr, "turns": len(train), "probes": len(probes),
            "probe_accuracy_before": before, "probe_accuracy_after": after,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "model_id": config.model}
    save_reader(model, folder, meta)
    shutil.rmtree(folder / RUN_DIRNAME, ignore_errors=True)
    return read_reader_meta(folder)
