"""The model trained on your own notes (``memex train``): where it lives in the data home,
what it was trained on, the recall examples it learns from, and putting it onto a
freshly loaded LongNet model as its reader (on a turn's tokens only: issue 18).

Layout: ``<home>/train/`` holds ``checkpoint.pt`` (the run in progress or the last run)
and, once a run has finished, ``adapter.safetensors`` + ``adapter.json`` (what it was
trained on, perplexity before/after, the base weights it belongs to).
"""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import numpy as np

TRAIN_DIRNAME = "train"
# Before issue 18 training merged its adapter into the weights that write the memory and
# flagged the memory with this; a home that still carries the flag holds a memory written
# by trained weights, and rebuilds it once.
REBUILD_REASON = ("the model was trained on your notes (`memex train`): the memory's keys "
                  "and values changed")
FACT_TOKENS = 384  # an entry's first tokens, placed far back in a recall window
ANSWER_TOKENS = 48
PASSKEY_SHARE = 0.25  # of the recall examples; the rest come from the user's entries


def train_dir(home) -> Path:
    return Path(home) / TRAIN_DIRNAME


def adapter_meta(home) -> dict | None:
    """What ``adapter.json`` says, or None when nothing was trained (or it is unreadable)."""
    from longnet.training import read_adapter_meta

    return read_adapter_meta(train_dir(home))


def apply_reader(model, home, choice: str = "auto") -> str:
    """Put the reader ``choice`` names onto ``model`` and say which it was: "trained"
    (what `memex train` learned from these notes), "generic" (the one memex ships, trained
    on synthetic journals: ``assistant.readers``) or "none". ``auto`` takes the trained
    reader, else the generic one when it was trained for this model's writer, else none."""
    if choice == "none":
        return "none"
    if choice in ("auto", "trained") and apply_trained_reader(model, home):
        return "trained"
    if choice in ("auto", "generic") and apply_generic_reader(model, quiet=choice == "auto"):
        return "generic"
    return "none"


def apply_generic_reader(model, quiet: bool = False) -> bool:
    """Put the shipped generic reader onto ``model``; False (with a warning unless
    ``quiet``) when none ships or it learned against another writer."""
    from assistant.readers import generic_reader_dir
    from longnet.reader import ReaderError, load_reader, read_reader_meta

    folder = generic_reader_dir()
    if read_reader_meta(folder) is None:
        return False
    try:
        model.trained_adapter = load_reader(model, folder)
    except ReaderError as error:
        if not quiet:
            warnings.warn(f"the generic reader is not used: {error}", stacklevel=2)
        return False
    return True


def generic_reader_meta() -> dict | None:
    """What the shipped generic reader was trained on, or None when none ships."""
    from assistant.readers import generic_reader_dir
    from longnet.reader import read_reader_meta

    return read_reader_meta(generic_reader_dir())


def apply_trained_reader(model, home) -> bool:
    """Put what `memex train` learned onto ``model`` as its reader (``longnet.reader``):
    active only on a turn's own tokens, so the memory is always written by the base
    weights and training never makes it stale (issue 18). False, with a warning, when
    there is nothing trained or it was trained for another model or configuration."""
    from longnet.reader import ReaderError, load_reader, read_reader_meta
    from longnet.training import TrainingError, load_adapter_as_reader

    folder = Path(home) / "reader"  # `memex train` (assistant.engine.reader_training)
    if read_reader_meta(folder) is not None:
        try:
            model.trained_adapter = load_reader(model, folder)
            return True
        except ReaderError as error:
            warnings.warn(f"the reader is not used: {error}", stacklevel=2)
            return False
    meta = adapter_meta(home)
    if meta is None:
        return False
    if meta.get("base_weights_hash") != model.weights_hash:
        warnings.warn(f"the adapter in {train_dir(home)} was trained on other base weights "
                      f"({str(meta.get('base_weights_hash'))[:12]}, this model "
                      f"{model.weights_hash[:12]}): not used; run `memex train --window` again",
                      stacklevel=2)
        return False
    if meta.get("model_config") != model.config.to_dict():
        warnings.warn(f"the adapter in {train_dir(home)} was trained with another model "
                      "configuration (levels, positions or gates): not used; run "
                      "`memex train --window` again", stacklevel=2)
        return False
    if meta.get("kind") != "lora":
        warnings.warn("a fully trained model (`memex train --full`) rewrites the memory's "
                      "writer and is not used: the memory stays the base model's", stacklevel=2)
        return False
    try:
        load_adapter_as_reader(model, train_dir(home))
    except TrainingError as error:
        warnings.warn(f"the trained adapter is not used: {error}", stacklevel=2)
        return False
    model.trained_adapter = meta
    return True


def load_base_model(config, device: str | None = None):
    """The LongNet model as the engine configures it (levels, positions), without any
    trained adapter: training always starts from the base weights."""
    import longnet
    from assistant.config import model_overrides
    from assistant.home import model_cache_dir

    return longnet.LongNetLM.from_pretrained(config.model, cache_dir=model_cache_dir(),
                                             device=device, **model_overrides(config))


# --------------------------------------------------------------------------- recall examples


class RecallExamples:
    """Synthetic long-range recall examples from the user's own entries, plus passkeys.

    An entry example puts the entry's first ``FACT_TOKENS`` stream tokens (its dated
    header and opening, exactly as the memory reads them) far back in a window and asks
    at the end, in the same chat format as ``memex ask --mode memory``, either
    "What did I write on 2023-04-12?" (answer: the entry's first sentence) or how a
    sentence of it that begins with a few quoted words goes on (answer: the rest of
    it). A passkey example hides a five-digit number the same way. Only entries in the
    training part of the stream are used. Called with a numpy Generator, it returns a
    ``longnet.training.RecallItem``; the same generator state gives the same example.
    """

    def __init__(self, store, tokenizer, train_end: int, today: date | None = None,
                 passkey_share: float = PASSKEY_SHARE):
        from assistant.engine import prompting

        self.store, self.tokenizer, self.today = store, tokenizer, today or date.today()
        self.passkey_share = passkey_share
        self.entries = []
        for entry in store.entries_between():
            if not entry.date or entry.token_start is None or entry.token_end is None:
                continue
            if entry.token_end > train_end:
                continue
            opening = entry.text[:1200]  # sentences that lie inside the fact's tokens
            sentences = [s for s in prompting.split_sentences(opening) if len(s.split()) >= 3]
            if sentences:
                self.entries.append((entry, sentences))
        self.eos = self._eos_id()

    def __len__(self) -> int:
        return len(self.entries)

    def _eos_id(self) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(token_id, int) and token_id >= 0 and token_id != self.tokenizer.unk_token_id:
            return token_id
        return int(self.tokenizer.eos_token_id)

    def _encode(self, text: str) -> np.ndarray:
        from ingest.stream import encode_batch

        return np.asarray(encode_batch(self.tokenizer, [text])[0], dtype=np.int64)

    def _prompt(self, question: str) -> np.ndarray:
        from assistant.engine import prompting
        from assistant.engine.dates import resolve_dates

        found = resolve_dates(question, self.today)
        messages = prompting.answer_messages(question, None, (), found.label if found else None)
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                 tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return np.asarray(list(ids), dtype=np.int64)

    def _answer(self, text: str) -> np.ndarray:
        ids = self._encode(" ".join(text.split()))[:ANSWER_TOKENS]
        return np.concatenate([ids, [self.eos]])

    def __call__(self, rng: np.random.Generator):
        from longnet.training import RecallItem

        if not self.entries or rng.random() < self.passkey_share:
            key = int(rng.integers(10000, 100000))
            fact = self._encode(f"\n\nImportant: the pass key is {key}. Remember it. "
                                f"{key} is the pass key.\n\n")
            return RecallItem(fact, self._prompt("What is the pass key?"),
                              self._answer(f"The pass key is {key}."), "passkey")
        entry, sentences = self.entries[int(rng.integers(len(self.entries)))]
        fact = self.store.stream.read(entry.token_start,
                                      min(entry.token_end, entry.token_start + FACT_TOKENS))
        day = entry.date[:10]
        long_ones = [s for s in sentences if len(s.split()) >= 8]
        if long_ones and rng.random() < 0.5:
            sentence = long_ones[int(rng.integers(len(long_ones)))].split()
            cut = int(rng.integers(3, min(6, len(sentence) - 3) + 1))
            question = (f'In my note of {day}, how does the sentence that begins '
                        f'"{" ".join(sentence[:cut])}" go on?')
            return RecallItem(fact, self._prompt(question), self._answer(" ".join(sentence[cut:])),
                              "entry")
        return RecallItem(fact, self._prompt(f"What did I write on {day}?"),
                          self._answer(sentences[0]), "entry")
