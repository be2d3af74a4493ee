"""`memex train`: the reader learns to read the memory the base weights wrote.

LongMem's split (issue 18): the memory in the data home is the frozen model's and stays
as it is; a reader (``longnet.reader``) learns, one turn per example, to answer from it.
It starts from the generic reader memex ships (``assistant.readers``: synthetic journals)
when that fits the model, and learns from the user's own notes, no labels asked, with
three kinds of turn made from the sentences of the entries the memory holds:

- ``cloze``: "How does this sentence I wrote on 14 March 2023 go on: “<first half>”" →
  the second half, reading the entry's stored rows;
- ``date``: "On which day did I write “<the sentence's first words>”?" → "On 14 March 2023.";
- ``name``: "In my note of 14 March 2023, who or what is the ___ in “<the sentence with a
  name blanked>”?" → the name.

The date and name turns are made exactly as memory answers are (``Engine.memory_turn``:
the same search, the same recalled rows, the same prompt), so the reader learns to read
what answers give it. One sentence in ten (chosen by its hash, so always the same ones)
is a probe, never trained on: the share of probe turns answered word for word is
measured before and after. No evaluation question is ever a turn. Training is
incremental: a later run goes on from the last reader for as many more examples, with
turns from every entry the memory holds (new entries and replay of the old). The reader
lives in ``reader/`` of the data home.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

READER_DIRNAME = "reader"
RUN_DIRNAME = "run"  # the resumable checkpoint of the run in progress
PROBE_EVERY = 10  # one sentence in ten is a probe
ANSWER_TOKENS = 24
PROBES_MEASURED = 24
TURN_KINDS = ("cloze", "date", "name")
DEFAULT_STEPS = 1200  # ~25 minutes on 2 CPU cores at ~0.9 examples/s (bench/reader.py)
DEFAULT_LR = 1e-4
# A capitalised word inside a sentence (not its first word): a name to blank.
_NAME = re.compile(r"(?<=[a-z,;] )([A-Z][a-z]+(?:[ -][A-Z][a-z]+)*)")


def reader_dir(home) -> Path:
    return Path(home) / READER_DIRNAME


@dataclass
class Sentence:
    text: str
    day: str  # the entry's date, spoken ("14 March 2023")
    span: tuple[int, int] | None  # the entry's stream span, when its rows are stored


def note_sentences(store, memory_tokens: int, rows=None) -> tuple[list, list]:
    """(training sentences, probe sentences) of the dated entries the memory holds."""
    from assistant.engine import prompting

    train, probes = [], []
    for entry in store.entries_between():
        if not entry.date or entry.token_end is None or entry.token_end > memory_tokens:
            continue
        span = None
        if rows is not None and entry.token_start is not None \
                and rows.covers(entry.token_start, entry.token_end):
            span = (entry.token_start, entry.token_end)
        day = prompting.spoken_date(entry.date)
        for text in prompting.split_sentences(entry.text or ""):
            if len(text.split()) < 8:
                continue
            digest = int(hashlib.sha1(text.encode()).hexdigest(), 16)
            (probes if digest % PROBE_EVERY == 0 else train).append(Sentence(text, day, span))
    return train, probes


def make_turn(engine, sentence: Sentence, kind: str):
    """A ``Turn`` of ``kind`` made from one of the user's sentences; a cloze turn when the
    sentence has no name to blank."""
    from assistant.engine import prompting
    from longnet.training import Turn

    tokenizer = engine.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    words = sentence.text.split()
    names = _NAME.findall(sentence.text) if kind == "name" else []
    if kind == "date":
        question = f"On which day did I write “{' '.join(words[:10])}”?"
        made = engine.memory_turn(question)
        answer = tokenizer.encode(f"On {sentence.day}.", add_special_tokens=False) + [end]
        return Turn(np.asarray(made.prompt_ids), np.asarray(answer), kind, recall=made.recall)
    if names:
        name = names[0]
        blanked = sentence.text.replace(name, "___", 1)
        question = f"In my note of {sentence.day}, who or what is the ___ in “{blanked}”?"
        made = engine.memory_turn(question)
        answer = tokenizer.encode(f"{name}.", add_special_tokens=False) + [end]
        return Turn(np.asarray(made.prompt_ids), np.asarray(answer), "name", recall=made.recall)
    half = len(words) // 2
    question = (f"How does this sentence I wrote on {sentence.day} go on: "
                f"“{' '.join(words[:half])}”")
    prompt = engine._chat_ids(prompting.answer_messages(question, None, (), None))
    answer = tokenizer.encode(" ".join(words[half:]), add_special_tokens=False)[:ANSWER_TOKENS]
    return Turn(np.asarray(prompt), np.asarray(answer), "cloze",
                recall=[sentence.span] if sentence.span else None)


def run_reader_training(home, steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                        resume: bool = True, say=None, progress=None,
                        dtype: str = "auto") -> dict:
    """Train (or go on training) the reader of ``home``'s memory for ``steps`` more
    examples; returns the saved reader's metadata. Raises TrainingInterrupted on Ctrl-C
    (checkpoint saved; the next run goes on)."""
    import torch

    from assistant.config import load_config
    from assistant.engine import Engine
    from assistant.engine.results import EngineError
    from assistant.engine.trained import load_base_model
    from assistant.readers import generic_reader_dir
    from longnet import Memory
    from longnet.device import choose_dtype, fast_dtype
    from longnet.reader import (
        ReaderError,
        add_reader,
        load_reader,
        read_reader_meta,
        reader_parameters,
        save_reader,
    )
    from longnet.training import answer_accuracy, train_reader

    say = say or (lambda text: None)
    home = Path(home)
    config = load_config(home)
    if not (home / "memory" / "memory.json").is_file():
        raise EngineError("the memory is not built yet: run `memex memory build` first (the "
                          "reader learns to read it)")
    compute = fast_dtype(torch.device("cpu")) if dtype in (None, "auto") else choose_dtype(dtype)
    model = load_base_model(config, device="cpu")
    try:
        memory = Memory.load(home / "memory", model)
    except (ValueError, OSError) as error:
        raise EngineError(f"the memory cannot be read ({error}): run `memex memory rebuild`") \
            from None
    folder = reader_dir(home)
    previous = read_reader_meta(folder)
    done_before, started_from = 0, "none"
    for source in ([folder] if previous is not None else []) + [generic_reader_dir()]:
        if read_reader_meta(source) is None:
            continue
        try:
            load_reader(model, source)  # go on from the last reader, else the generic one
        except ReaderError as error:
            say(f"the {'old' if source == folder else 'generic'} reader is not used "
                f"({error})")
            model = load_base_model(config, device="cpu")
            memory = Memory.load(home / "memory", model)
            if source == folder:
                previous = None  # a new reader starts: nothing of the old one carries over
            continue
        for parameter in reader_parameters(model).values():
            parameter.requires_grad_(True)
        if source == folder:
            done_before = int(previous.get("examples_seen", 0))
            started_from = previous.get("started_from", "none")
        else:
            started_from = "generic"
        break
    if getattr(model, "reader", None) is None:
        add_reader(model)
    engine = Engine(home, config=config)
    engine.use_longnet(model, memory)  # the memory is only read: nothing is appended
    try:
        sentences, probe_sentences = note_sentences(engine.store, memory.stream_offset,
                                                    rows=memory.rows)
        if not sentences:
            raise EngineError("the memory holds no dated entry with a sentence of eight words "
                              "or more to learn from")
        probe_sentences = probe_sentences[:PROBES_MEASURED]
        probes = [make_turn(engine, sentence, TURN_KINDS[i % len(TURN_KINDS)])
                  for i, sentence in enumerate(probe_sentences)]
        say(f"{len(sentences):,} sentences of your notes to learn from, {len(probes)} probes "
            f"held out; {steps} examples, {str(compute).replace('torch.', '')}"
            + (", from the generic reader" if started_from == "generic" and not done_before
               else ""))
        before = answer_accuracy(memory, probes) if probes else None
        made: dict = {}

        def example(rng: np.random.Generator):
            key = (int(rng.integers(len(sentences))), TURN_KINDS[int(rng.integers(3))])
            if key not in made:
                made[key] = make_turn(engine, sentences[key[0]], key[1])
            return memory, made[key]

        started = time.perf_counter()
        # The run's checkpoint (seeded by the examples seen before it) lets an interrupted
        # run go on; once the reader is saved it is removed, and a later run starts from it.
        result = train_reader(model, example, steps, folder / RUN_DIRNAME, lr=lr,
                              checkpoint_every=10, resume=resume, progress=progress,
                              seed=done_before, dtype=compute)
        after = answer_accuracy(memory, probes) if probes else None
    finally:
        engine.close()
    meta = {"examples_seen": done_before + result.steps, "trained_up_to": memory.stream_offset,
            "wall_s": round((previous or {}).get("wall_s", 0.0) + time.perf_counter() - started, 1),
            "examples_per_s": (round(result.examples_per_s, 3) if result.examples_per_s
                               else None),
            "started_from": started_from, "dtype": str(compute).replace("torch.", ""),
            "lr": lr, "sentences": len(sentences), "probes": len(probes),
            "turn_kinds": list(TURN_KINDS),
            "probe_accuracy_before": before, "probe_accuracy_after": after,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "model_id": config.model}
    save_reader(model, folder, meta)
    shutil.rmtree(folder / RUN_DIRNAME, ignore_errors=True)
    return read_reader_meta(folder)
