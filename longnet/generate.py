"""Generation that reads a memory: the prompt and the answer attend through every
level into the state of the whole history, and the memory itself stays unchanged
(a chat turn enters the long-term memory only when asked with ``remember=True``).

The turn runs in a fork of the memory (``Memory.fork``): its rows go after the
memory's own, its dense local level keeps the whole turn in view, and it is thrown
away at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from longnet.device import autocast


def pick_token(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
               generator: torch.Generator | None = None) -> int:
    """Greedy when ``temperature`` is 0, else nucleus sampling from ``logits [V]``."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
    logits = logits.float()
    if temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs = torch.where(before < top_p, sorted_probs, torch.zeros_like(sorted_probs))
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    choice = torch.multinomial(probs.cpu(), 1, generator=generator)
    return int(choice)


def stop_set(config, stop_ids: Iterable[int] | None) -> set[int]:
    eos = config.eos_token_id
    stops = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    return stops | {int(t) for t in (stop_ids or ())}


@torch.inference_mode()
def generate(memory, prompt_ids, max_new_tokens: int = 256, temperature: float = 0.0,
             top_p: float = 1.0, stop_ids: Iterable[int] | None = None,
             on_token: Callable[[int], object] | None = None, seed: int | None = None,
             remember: bool = False, isolate_window: bool = False,
             choose: Callable[[torch.Tensor], int] | None = None,
             decode_weights: str = "float32",
             recall: Sequence[tuple[int, int]] | None = None) -> list[int]:
    """Generated token ids (the stop token left out).

    Stops at EOS, at any of ``stop_ids``, after ``max_new_tokens``, or when
    ``on_token(token_id)`` (called as each token is chosen, for streaming) returns
    False. With ``remember=True`` the prompt and the answer are appended to the memory
    afterwards. ``isolate_window``: the turn's sliding window starts empty (see
    ``Memory.fork``); the history is reached through the far levels only.
    ``choose(logits [V]) -> token id`` replaces the greedy/nucleus choice (constrained
    decoding); temperature, top_p and seed are then the chooser's business.
    ``decode_weights``: ``"int4"`` or ``"float16"`` let each one-token step (decoding)
    read packed copies of the weights on a CPU (``LongNetLM.packed_decoding``): faster,
    with bfloat16/float16 rounding in the projections; ``"float32"`` reads them as they are.
    ``recall``: spans of the memory whose stored rows the turn reads in place of the
    window (``Memory.recall_fork``).
    """
    prompt = [int(t) for t in torch.as_tensor(prompt_ids).reshape(-1).tolist()]
    if not prompt:
        raise ValueError("generate needs a non-empty prompt")
    if max_new_tokens < 0:
        raise ValueError("max_new_tokens must be >= 0")
    vocab = memory.config.vocab_size
    if min(prompt) < 0 or max(prompt) >= vocab:
        raise ValueError(f"prompt token ids must lie in [0, {vocab})")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    stops = stop_set(memory.config, stop_ids)
    if recall is not None:
        turn = memory.recall_fork(recall, reserve_tokens=len(prompt) + max_new_tokens)
    else:
        turn = memory.fork(dense_local=True, isolate_window=isolate_window,
                           reserve_tokens=len(prompt) + max_new_tokens)
    device = memory.device

    ids = torch.tensor(prompt, dtype=torch.long, device=device)
    answer: list[int] = []
    packed = memory.model.packed_decoding(
        decode_weights if memory.dtype == torch.float32 else "float32")
    with autocast(device, memory.dtype), packed:  # one context: weight casts are cached
        logits = None
        for begin in range(0, len(prompt), turn.chunk_size):
            chunk = ids[begin:begin + turn.chunk_size]
            last = begin + turn.chunk_size >= len(prompt)
            logits = turn._step(chunk, logits=last, last_only=True)
        for _ in range(max_new_tokens):
            token = (choose(logits[-1]) if choose is not None
                     else pick_token(logits[-1], temperature, top_p, generator))
            if token in stops:
                break
            answer.append(token)
            if on_token is not None and on_token(token) is False:
                break
            if len(answer) == max_new_tokens:
                break
            logits = turn._step(torch.tensor([token], device=device), last_only=True)
    if remember:
        memory.append(prompt + answer, return_logits=False)
    return answer
