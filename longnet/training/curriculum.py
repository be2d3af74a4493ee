"""The data a run trains on.

Which window of the stream micro-step m reads is a pure function of (seed, m)
(``WindowPlan``), so a resumed run sees what an uninterrupted one would; a share of the
windows are synthetic recall examples (``RecallItem`` spliced in by ``recall_window``);
the stream's tail is held out for validation (``holdout_tokens``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from longnet.training.config import TrainConfig, TrainingError

# --------------------------------------------------------------------------- data


@dataclass
class RecallItem:
    """One synthetic recall example: ``fact`` goes far back in the window, ``prompt``
    then ``answer`` close it; the loss is taken on ``answer`` alone."""

    fact: np.ndarray
    prompt: np.ndarray
    answer: np.ndarray
    kind: str = "entry"


RecallSource = Callable[[np.random.Generator], RecallItem]


@dataclass
class Window:
    input_ids: np.ndarray  # [T]
    targets: np.ndarray  # [T]
    mask: np.ndarray  # [T] bool: rows that count in the loss
    kind: str  # "text" or the recall item's kind


def _ids(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def recall_window(item: RecallItem, filler: np.ndarray, seq_len: int,
                  rng: np.random.Generator) -> Window:
    """Filler text with the fact spliced into the window's first half and the question
    and answer at the end (the window holds ``seq_len + 1`` tokens)."""
    fact, prompt, answer = _ids(item.fact), _ids(item.prompt), _ids(item.answer)
    tail = np.concatenate([prompt, answer])
    if not recall_fits(item, seq_len):
        raise TrainingError(f"a recall example ({len(fact)} + {len(tail)} tokens) does not fit "
                            f"a window of {seq_len} tokens")
    fact = fact[:(seq_len + 1) // 2]  # a short window keeps the fact's start
    room = seq_len + 1 - len(tail) - len(fact)
    place = int(rng.integers(0, room // 2 + 1))  # first half: far from the question
    filler = _ids(filler)[:room]
    if len(filler) < room:  # a stream shorter than the window: repeat it
        filler = np.resize(filler, room) if len(filler) else np.zeros(room, np.int64)
    sequence = np.concatenate([filler[:place], fact, filler[place:], tail])
    mask = np.zeros(seq_len, dtype=bool)
    mask[seq_len - len(answer):] = True
    return Window(sequence[:-1], sequence[1:], mask, item.kind)


def recall_fits(item: RecallItem, seq_len: int) -> bool:
    """Whether a window of ``seq_len`` holds the question and answer in its second half
    (the fact is cut to the first half when it is longer)."""
    return 0 < len(item.answer) and len(item.prompt) + len(item.answer) <= seq_len // 2


class WindowPlan:
    """Which window micro-step ``m`` trains on: a pure function of (seed, m).

    Text windows go through the training part in a shuffled order per epoch (a random
    offset per epoch, so window boundaries move); a share ``recall_ratio`` of the
    micro-steps are recall examples instead."""

    def __init__(self, tokens, train_end: int, seq_len: int, seed: int,
                 recall: RecallSource | None = None, recall_ratio: float = 0.0):
        self.tokens, self.train_end, self.seq_len, self.seed = tokens, train_end, seq_len, seed
        self.recall = recall
        self.recall_ratio = recall_ratio if recall is not None else 0.0
        self.windows = max(1, (train_end - 1) // seq_len)
        self.spare = max(0, train_end - 1 - self.windows * seq_len)

    def text_start(self, micro: int) -> int:
        epoch, index = divmod(micro, self.windows)
        rng = np.random.default_rng([self.seed, epoch, 1])
        order = rng.permutation(self.windows)
        offset = int(rng.integers(0, self.spare + 1))
        return offset + int(order[index]) * self.seq_len

    def window(self, micro: int) -> Window:
        rng = np.random.default_rng([self.seed, micro, 2])
        wants_recall = self.recall_ratio and rng.random() < self.recall_ratio
        item = self.recall(rng) if wants_recall else None
        if item is not None and recall_fits(item, self.seq_len):  # else: a text window
            start = int(rng.integers(0, max(1, self.train_end - self.seq_len)))
            filler = np.asarray(self.tokens[start:min(self.train_end, start + self.seq_len)])
            return recall_window(item, filler, self.seq_len, rng)
        start = self.text_start(micro)
        ids = _ids(self.tokens[start:start + self.seq_len + 1])
        targets = ids[1:]
        return Window(ids[:-1], targets, targets != 0, "text")  # 0 = forgotten text


def stream_digest(tokens, end: int | None = None) -> str:
    """sha256 of token ids [0, end) as little-endian uint32 (what a run trained on)."""
    digest = hashlib.sha256()
    end = len(tokens) if end is None else end
    for begin in range(0, end, 1 << 20):
        digest.update(np.asarray(tokens[begin:min(end, begin + (1 << 20))], dtype="<u4").tobytes())
    return digest.hexdigest()


def holdout_tokens(total: int, config: TrainConfig) -> int:
    """How many tokens at the end of a stream of ``total`` are held out for validation:
    ``validation_tokens``, by default one window capped at 10% of the stream."""
    config = config if config.seq_len else config.resolve()
    validation = config.validation_tokens
    if validation is None:
        validation = min(config.seq_len, total // 10)
    return max(0, min(int(validation), total // 2))
