"""Training the reader (``longnet.reader``) against memories the frozen model wrote.

An example is a built memory (no gradient into it) and a turn placed after its last
token: a prompt and its answer. The turn runs in a ``Memory.training_fork`` with the
reader on, the loss is the cross-entropy of the answer's tokens only, and only the
reader's LoRA factors and gate offsets learn. The cost grows with the turn's length and
the memory's rows, never with the history: nothing of the history is read again.

``train_reader`` is resumable (a checkpoint every ``checkpoint_every`` steps and at
Ctrl-C, written atomically), and the same seed gives the same reader whether or not it
was interrupted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from longnet.device import autocast
from longnet.reader import GATE_OFFSET, reader_parameters, writer_identity
from longnet.training.config import TrainingError, TrainingInterrupted
from longnet.training.loop import (
    _rng_state,
    _set_rng_state,
    _StopGuard,
    atomic_torch_save,
    load_torch_file,
)

READER_CHECKPOINT = "reader-checkpoint.pt"
# The gate offsets start where the writer's far gates are (CLOSED_GATE, -8: a weight of
# e^-8) and must move several units to open a level; at the LoRA's rate, 200 steps of Adam
# (about lr a step) move them 0.2 at most, so the far levels stay shut through training.
GATE_LR = 0.05


@dataclass
class Turn:
    """A prompt and its answer (token ids) to be read after a memory."""

    prompt: np.ndarray
    answer: np.ndarray
    kind: str = ""
    recall: list[tuple[int, int]] | None = None  # spans whose stored rows it reads


@dataclass
class ReaderProgress:
    step: int
    steps: int
    loss: float
    examples_per_s: float | None
    elapsed_s: float
    eta_s: float | None
    kind: str = ""


@dataclass
class ReaderResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    examples_per_s: float | None = None
    resumed_from: int = 0


def _far_levels_for(memory, turn: Turn):
    """A turn that reads recalled rows reads them with the far levels shut, in training as
    in answers: what search found stands in its window, and the far levels' rows (nearly
    closed, yet thousands) only blur it; skipping them also halves a step's time."""
    if turn.recall is None:
        return contextlib.nullcontext()
    return memory.model.far_levels_shut()


def turn_loss(memory, turn: Turn, isolate_window: bool = False,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Mean cross-entropy of ``turn.answer`` read after ``memory`` (differentiable in the
    model's reader; the memory is left as it was). ``dtype``: the turn's compute dtype
    (bfloat16: autocast; the fork's stored rows are prepared outside it)."""
    prompt = torch.as_tensor(np.asarray(turn.prompt), dtype=torch.long, device=memory.device)
    answer = torch.as_tensor(np.asarray(turn.answer), dtype=torch.long, device=memory.device)
    if prompt.numel() == 0 or answer.numel() == 0:
        raise TrainingError("a turn needs a prompt and an answer")
    fork = memory.training_fork(isolate_window=isolate_window, recall=turn.recall)
    with autocast(memory.device, dtype), _far_levels_for(memory, turn):
        logits = fork._step(torch.cat([prompt, answer]), logits=True)
    # The logits at the prompt's last token and the answer's tokens but the last predict
    # the answer's tokens.
    predicting = logits[prompt.numel() - 1:-1].float()
    return F.cross_entropy(predicting, answer)


@torch.inference_mode()
def answer_accuracy(memory, turns: list[Turn], isolate_window: bool = False) -> float:
    """Share of turns whose every answer token is the model's most likely next token."""
    right = 0
    for turn in turns:
        prompt = torch.as_tensor(np.asarray(turn.prompt), dtype=torch.long, device=memory.device)
        answer = torch.as_tensor(np.asarray(turn.answer), dtype=torch.long, device=memory.device)
        fork = (memory.recall_fork(turn.recall, reserve_tokens=prompt.numel() + answer.numel())
                if turn.recall is not None else
                memory.fork(dense_local=True, isolate_window=isolate_window))
        with _far_levels_for(memory, turn):
            logits = fork._step(torch.cat([prompt, answer]), logits=True)
        right += bool((logits[prompt.numel() - 1:-1].argmax(-1) == answer).all())
    return right / max(1, len(turns))


def train_reader(model, examples: Callable[[np.random.Generator], tuple[object, Turn]],
                 steps: int, out_dir, *, lr: float = 1e-3, gate_lr: float = GATE_LR,
                 seed: int = 0,
                 checkpoint_every: int = 50, isolate_window: bool = False,
                 resume: bool = True, dtype: torch.dtype = torch.float32,
                 progress: Callable[[ReaderProgress], None] | None = None) -> ReaderResult:
    """Train ``model.reader`` (see ``longnet.reader.add_reader``) for ``steps`` examples.

    ``examples(rng)`` gives (memory, turn): a memory built by this model's frozen writer
    (it is only read) and the turn to learn. Ctrl-C / SIGTERM write a checkpoint at the
    last whole step and raise ``TrainingInterrupted``; a rerun with ``resume`` goes on
    from it. A checkpoint made for another writer is refused. ``dtype`` bfloat16 runs the
    turns under autocast (the parameters and their updates stay float32), on a CPU with
    native bf16 (``longnet.device.fast_dtype``; bench/reader.py measures the gain)."""
    params = reader_parameters(model)
    if not params:
        raise TrainingError("the model has no reader: add one with longnet.reader.add_reader")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = {"writer": writer_identity(model), "seed": seed, "lr": lr, "gate_lr": gate_lr,
                   "parameters": sorted(params)}
    gates = [p for name, p in params.items() if name.endswith(GATE_OFFSET)]
    factors = [p for name, p in params.items() if not name.endswith(GATE_OFFSET)]
    groups = [{"params": factors, "lr": lr}]
    if gates:
        groups.append({"params": gates, "lr": gate_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    path = out_dir / READER_CHECKPOINT
    state = {"step": 0, "seconds": 0.0, "losses": []}
    rng = np.random.default_rng(seed)
    saved = load_torch_file(path) if resume and path.is_file() else None
    if saved is not None:
        if saved.get("fingerprint") != fingerprint:
            raise TrainingError(f"the checkpoint in {out_dir} belongs to another reader run "
                                "(another writer, seed or learning rate): start a fresh run")
        with torch.no_grad():
            for name, parameter in params.items():
                parameter.copy_(saved["params"][name])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["numpy_rng"]
        _set_rng_state(saved["torch_rng"])
        state = saved["state"]
    else:
        torch.manual_seed(seed)
    resumed_from = state["step"]

    def save():
        atomic_torch_save({"fingerprint": fingerprint,
                           "params": {n: p.detach().cpu().clone() for n, p in params.items()},
                           "optimizer": optimizer.state_dict(),
                           "numpy_rng": rng.bit_generator.state, "torch_rng": _rng_state(),
                           "state": state}, path)

    notify = progress or (lambda _p: None)
    started = time.perf_counter()
    seconds_before = state["seconds"]
    done_here = 0
    before = (rng.bit_generator.state, _rng_state(), state["step"])
    guard = _StopGuard()
    try:
        with guard:
            while state["step"] < steps:
                # An interrupted step is not taken: the checkpoint holds the generators
                # as they were before it, so a resumed run draws the same example.
                before = (rng.bit_generator.state, _rng_state(), state["step"])
                memory, turn = examples(rng)
                loss = turn_loss(memory, turn, isolate_window=isolate_window, dtype=dtype)
                guard.begin_update()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                state["step"] += 1
                state["losses"].append(float(loss.detach()))
                state["seconds"] = seconds_before + time.perf_counter() - started
                done_here += 1
                if state["step"] % checkpoint_every == 0:
                    save()
                guard.end_update()
                rate = done_here / max(1e-9, time.perf_counter() - started)
                notify(ReaderProgress(state["step"], steps, state["losses"][-1], rate,
                                      state["seconds"], (steps - state["step"]) / rate,
                                      getattr(turn, "kind", "")))
    except KeyboardInterrupt:
        state["seconds"] = seconds_before + time.perf_counter() - started
        if state["step"] == before[2]:  # stopped inside a step, before its update
            rng.bit_generator.state = before[0]
            _set_rng_state(before[1])
        save()
        raise TrainingInterrupted(state["step"], steps) from None
    save()
    rate = done_here / max(1e-9, time.perf_counter() - started) if done_here else None
    return ReaderResult(steps=state["step"], seconds=state["seconds"], losses=state["losses"],
                        examples_per_s=rate, resumed_from=resumed_from)
