"""One question asked in a conversation, as `memex ask` asks it, in-process or in the warm
server: the turn recorded before the answer, the answer saved as it streams (a crash keeps
what was said), and a stop (Ctrl-C, a client gone) kept as a partial answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

from assistant.engine.conversations import ConversationStore
from assistant.engine.quotes import short_part

SAVE_EVERY_S = 0.5


class AnswerStopped(Exception):
    """The answer was stopped part-way (the person pressed Ctrl-C or left); what was said
    so far is saved as a partial answer."""


def history_pairs(messages) -> list[tuple[str, str]]:
    """(question, answer) pairs of completed turns, the last three."""
    pairs, question = [], None
    for m in messages:
        if m.role == "user":
            question = m.content
        elif m.role == "assistant" and question is not None and m.content:
            pairs.append((question, short_part(m.content)))
            question = None
    return pairs[-3:]


def ask_in_conversation(engine, question: str, mode: str | None, resume: bool = False,
                        on_token: Callable[[str], None] | None = None,
                        today: date | None = None):
    """Answer ``question`` (``resume``: in the latest conversation, its last turns in view)
    and record the turn. ``on_token`` may raise ``Stopped`` to end the answer early (kept
    as a partial answer); Ctrl-C saves what was said and raises ``AnswerStopped``; any
    other failure is saved on the message as an error, then raised. ``today``: this answer's today (the engine's own is kept)."""
    chats = ConversationStore(engine.home)
    chats.mark_interrupted()
    conversation = chats.latest_conversation() if resume else None
    history = []
    if conversation is None:
        conversation = chats.new_conversation(mode=mode or engine.config.mode)
    else:
        history = history_pairs(chats.messages(conversation, with_sources=False))
    chats.add_message(conversation, "user", question)
    message = chats.add_message(conversation, "assistant", "", status="streaming",
                                mode=mode or engine.config.mode)
    parts: list[str] = []
    last_save = [time.monotonic()]

    def emit(piece: str) -> None:
        parts.append(piece)
        if on_token is not None:
            on_token(piece)
        if time.monotonic() - last_save[0] > SAVE_EVERY_S:
            chats.update_message(message, content="".join(parts))
            last_save[0] = time.monotonic()

    with engine.lock:  # (the warm server answers one question at a time)
        usual_today = engine.today
        if today is not None:
            engine.today = today
        try:
            answer = engine.answer(question, mode, history=history, on_token=emit)
        except KeyboardInterrupt as exc:  # the person stopped it
            chats.update_message(message, content="".join(parts), status="partial")
            raise AnswerStopped("stopped; the partial answer is saved") from exc
        except Exception as exc:  # an engine error, or a failure: recorded, then raised
            chats.update_message(message, content="".join(parts), status="error", note=str(exc))
            raise
        finally:
            engine.today = usual_today
    chats.update_message(message, content=answer.text, status=answer.status,
                         timings=answer.timings, note="; ".join(answer.notes) or None)
    chats.add_sources(message, answer.sources)
    return answer


def answer_payload(answer) -> dict:
    """What a client needs to show an answer it did not compute: ``--json``'s object plus
    the mode, status and notes."""
    return {**answer.to_json(), "mode": answer.mode, "status": answer.status,
            "notes": list(answer.notes)}


def answer_to_wire(answer) -> dict:
    """All of an ``Answer`` as JSON (for a front end that shows it in full: the TUI opens a
    source's whole text), read back by ``answer_from_wire``."""
    from dataclasses import asdict

    return {"question": answer.question, "mode": answer.mode, "text": answer.text,
            "short": answer.short, "generated": answer.generated,
            "quotes": [asdict(q) for q in answer.quotes],
            "sources": [asdict(s) for s in answer.sources], "timings": dict(answer.timings),
            "notes": list(answer.notes), "status": answer.status,
            "prompt_tokens": answer.prompt_tokens, "new_tokens": answer.new_tokens,
            "memory_lag": answer.memory_lag, "memory": answer.memory}


def answer_from_wire(data: dict):
    from assistant.engine.answering import Answer
    from assistant.engine.conversations import SourceRecord
    from assistant.engine.quotes import Quote

    return Answer(question=data["question"], mode=data["mode"], text=data["text"],
                  short=data["short"], generated=data["generated"],
                  quotes=[Quote(**q) for q in data["quotes"]],
                  sources=[SourceRecord(**s) for s in data["sources"]],
                  timings=data["timings"], notes=data["notes"], status=data["status"],
                  prompt_tokens=data["prompt_tokens"], new_tokens=data["new_tokens"],
                  memory_lag=data["memory_lag"], memory=data["memory"])
