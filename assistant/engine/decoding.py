"""Turning a prompt into streamed text (methods of ``Engine``): the chat template,
token-by-token emission, and decoding with the plain dense model and its KV cache (the
``retrieval`` and ``dense`` modes, and reflections)."""

from __future__ import annotations

import re

import sentencex

from assistant.engine import prompting
from assistant.engine.answering import Answer
from assistant.engine.quotes import SHORT_WORDS, choose_quotes
from assistant.engine.results import EngineError

DENSE_CONTEXT = 8192
QUESTION_ROOM = 256  # tokens kept free after the dense window for the question


class DecodingMixin:
    """Prompt ids, the emitter, the dense model's generation loop."""

    def _chat_ids(self, messages: list[dict]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    class _Emit:
        """Turns generated ids into text pieces (decoding whole text: safe for multi-byte)."""

        def __init__(self, tokenizer, on_token, timer, stop_ids, one_sentence: bool = False):
            self.tokenizer, self.on_token, self.timer = tokenizer, on_token, timer
            self.ids: list[int] = []
            self.text = ""
            self.stop_ids = stop_ids
            self.done = False
            self.one_sentence = one_sentence  # a short answer: its first sentence only

        def begin_with(self, ids: list[int]):
            """The answer's first words are given (a stem): show them and go on from them."""
            if not ids:
                return
            self.ids.extend(int(i) for i in ids)
            self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            if self.on_token:
                self.on_token(self.text)

        def __call__(self, token_id: int) -> bool:
            """Take one token; returns True when the answer is finished."""
            if token_id in self.stop_ids:
                self.done = True
                return True
            self.timer.token()
            self.ids.append(int(token_id))
            text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                return False  # half a character: wait for the rest
            if self.one_sentence:
                first = first_sentence(text)
                if first is not None:  # a sentence ended and the model went on: stop there
                    piece, self.text = first[len(self.text):], first
                    if piece and self.on_token:
                        self.on_token(piece)
                    self.done = True
                    return True
            piece, self.text = text[len(self.text):], text
            head = self.text.strip().split("\n\n")[0]
            if "\n\n" in self.text.strip() and not head.rstrip().endswith(":"):
                # One short answer is wanted; a blank line means the model moved on
                # (unless it was only the lead-in, "The answer is:").
                self.text = head
                self.done = True
                return True
            if piece and self.on_token:
                self.on_token(piece)
            return False

    def _emitter(self, answer, timer, on_token, one_sentence: bool = False):
        stop = {self.tokenizer.eos_token_id}
        for token in ("<|im_end|>", "<|endoftext|>", "<|im_start|>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id >= 0:
                stop.add(token_id)
        return self._Emit(self.tokenizer, on_token, timer, stop, one_sentence=one_sentence)

    # -- dense model

    def _pick(self, logits):
        import torch

        temperature = self.config.temperature
        if temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < self.config.top_p
        sorted_probs = sorted_probs * keep
        choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1)
        return int(order[choice])

    def _generate_dense(self, prompt_ids: list[int], emit, prefix_key=None, prefix_ids=None,
                        choose=None):
        """Greedy/sampled decoding with the dense model and its KV cache.

        With ``prefix_key``, the KV of ``prefix_ids`` is kept and reused by the next call
        with the same key (the dense mode's 8K window is the same for every question).
        """
        import torch
        from transformers import DynamicCache

        model = self.dense_model
        device = model.device
        with torch.inference_mode():
            if prefix_key is not None:
                if self._dense_prefix is None or self._dense_prefix[0] != prefix_key:
                    self._dense_prefix = None
                    cache = DynamicCache()
                    ids = torch.tensor([prefix_ids], device=device)
                    model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
                    self._dense_prefix = (prefix_key, len(prefix_ids), cache)
                _, prefix_len, cache = self._dense_prefix
                extra = cache.get_seq_length() - prefix_len  # the previous question's tokens
                if extra > 0:
                    cache.crop(-extra)
            else:
                cache = DynamicCache()
            ids = torch.tensor([prompt_ids], device=device)
            for _ in range(self.config.max_new_tokens):
                out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
                token = (choose or self._pick)(out.logits[0, -1])
                if emit(token) or emit.done:
                    break
                ids = torch.tensor([[token]], device=device)

    def _generate_dense_window(self, messages, emit, answer: Answer, stem_ids=(), choose=None):
        """The baseline: the last 8K tokens of the stream, then the question."""
        tokenizer = self.tokenizer
        question = messages[-1]["content"]
        head = self._chat_ids(messages[:-1] + [{"role": "user", "content": "\x00"}])
        split = _find_marker(tokenizer, head)
        head_ids, tail_ids = head[:split[0]], head[split[1]:]
        question_ids = tokenizer.encode("\n\n" + question, add_special_tokens=False)
        tail_ids = question_ids + tail_ids + list(stem_ids)
        # A fixed room for the question keeps the window (and its cached KV) the same
        # from one question to the next.
        room = max(QUESTION_ROOM, len(tail_ids))
        budget = DENSE_CONTEXT - len(head_ids) - room - self.config.max_new_tokens
        stream = self.store.stream
        total = len(stream)
        start = max(0, total - max(0, budget))
        window = [int(t) for t in stream.read(start, total)] if total else []
        prefix_ids = head_ids + tokenizer.encode("Notes:\n", add_special_tokens=False) + window
        answer.prompt_tokens = len(prefix_ids) + len(tail_ids)
        if not answer.sources:
            answer.sources, answer.quotes = self._window_sources(start, total, answer.question)
        self._generate_dense(tail_ids, emit, prefix_key=("dense", start, total, tuple(head_ids)),
                             prefix_ids=prefix_ids, choose=choose)

    def _window_sources(self, start: int, end: int, question: str):
        """Entries inside the dense window, those sharing most words with the question
        first, and the quotes of them that match it best: (sources, quotes)."""
        spans = getattr(self.store, "spans_for", None)
        if spans is None or end <= start:
            return [], []
        passages = list(spans(start, end))
        if not passages:
            return [], []
        sentences = prompting.select_sentences(question, passages, self.config.sentences)
        matching = [s for s in sentences if s.score > 0]
        return self._sources(passages, matching), choose_quotes(matching, passages, limit=2,
                                                               question=question)


def _find_marker(tokenizer, ids: list[int]) -> tuple[int, int]:
    """Where the placeholder user content sits in a templated prompt: (start, end) indices."""
    marker = tokenizer.encode("\x00", add_special_tokens=False)
    for i in range(len(ids) - len(marker), -1, -1):
        if ids[i:i + len(marker)] == marker:
            return i, i + len(marker)
    raise EngineError("could not place the notes inside the chat template")


def first_sentence(text: str, max_words: int = SHORT_WORDS) -> str | None:
    """The first sentence or line of ``text`` once something follows it, or its first
    ``max_words`` words once there are more; else None (the sentence may still be going:
    "Mr." before "Duke")."""
    stripped = text.lstrip()
    lead = text[: len(text) - len(stripped)]
    words = list(re.finditer(r"\S+", stripped))
    if len(words) > max_words:
        stripped = stripped[:words[max_words - 1].end()]
        first = first_sentence(lead + stripped + " ", max_words)
        return first if first is not None else lead + stripped
    line, newline, _ = stripped.partition("\n")
    if newline and line.strip():
        return lead + line.rstrip()
    pieces = list(sentencex.segment("en", stripped))
    if len(pieces) > 1 and pieces[1].strip():
        return lead + pieces[0].rstrip()
    return None
