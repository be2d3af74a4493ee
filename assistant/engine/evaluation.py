"""Scoring answers against known ones (`memex eval`, bench/qa.py): a questions file, the
accepted answers and evidence paths, and the accuracy and citation rate of a run."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.engine.grounding import repeats
from assistant.engine.prompting import spoken_date
from assistant.engine.quotes import says_notes_dont_say


def score(answer_text: str, sources, accepted: list[str], evidence: list[str]) -> tuple[bool, bool]:
    """(correct, cited): an accepted string in the answer (case-insensitive); an evidence
    path among the sources."""
    text = answer_text.lower()
    correct = any(str(a).lower() in text for a in accepted)
    paths = {_norm_path(s.path) for s in sources}
    cited = any(_norm_path(e) in paths for e in evidence)
    return correct, cited


def _norm_path(path: str) -> str:
    return str(path).replace("\\", "/").lstrip("./")


def load_questions(path: Path) -> list[dict]:
    """Lines of {"question", "answers", "evidence"}; a bad line is an error naming it."""
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise ValueError(f"{path}:{number}: needs a \"question\" string")
        answers = item.get("answers", [])
        evidence = item.get("evidence", [])
        if not isinstance(answers, list) or not isinstance(evidence, list):
            raise ValueError(f"{path}:{number}: \"answers\" and \"evidence\" must be lists")
        items.append({**item, "answers": [str(a) for a in answers],
                      "evidence": [str(e) for e in evidence]})
    return items


MAX_ANSWER_WORDS = 120  # a rendered answer longer than this counts as wrong


def has_loop(text: str) -> bool:
    """A repeated run of four words, or a broken character."""
    return "\ufffd" in text or repeats(text + " ", 4)


def run_eval(engine, items: list[dict], mode: str, progress=None) -> dict:
    """Answer every question; the summary and per-question results.

    ``accuracy``: an accepted string anywhere in the rendered answer; ``short_accuracy``:
    in the short answer; ``quote_accuracy``: in the quotes. A question with no accepted
    answers cannot be answered from the notes: it counts as right (in every column) when
    the answer says the notes don't say, and ``abstention`` is the share of those that do.
    ``loops``: short answers with a repeated run of four words or a broken character."""
    results = []
    for index, item in enumerate(items):
        answer = engine.answer(item["question"], mode)
        # A quote is its sentence and its date (a "when" question's answer is the date).
        quotes_text = "\n".join(f"{q.date} {spoken_date(q.date)}: {q.text}" for q in answer.quotes)
        answerable = bool(item["answers"])
        abstained = says_notes_dont_say(answer.short)
        too_long = len(answer.text.split()) > MAX_ANSWER_WORDS
        if answerable:
            correct, cited = score(answer.text, answer.sources, item["answers"], item["evidence"])
            short_correct = score(answer.short, (), item["answers"], ())[0]
            quote_correct = score(quotes_text, (), item["answers"], ())[0]
        else:
            correct = short_correct = quote_correct = abstained
            cited = None
        results.append({
            "question": item["question"], "answer": answer.text, "short": answer.short,
            "quotes": [q.public() for q in answer.quotes],
            "correct": correct and not too_long, "short_correct": short_correct,
            "quote_correct": quote_correct, "cited": cited, "answerable": answerable,
            "abstained": abstained, "loop": has_loop(answer.short),
            "expected": item["answers"], "evidence": item["evidence"],
            "sources": [s.public() for s in answer.sources], "timings": answer.timings,
            "status": answer.status, "prompt_tokens": answer.prompt_tokens,
        })
        if progress:
            progress(index + 1, results[-1])
    n = len(results)
    answerable = [r for r in results if r["answerable"]]
    unanswerable = [r for r in results if not r["answerable"]]

    def share(rows, key):
        return round(sum(bool(r[key]) for r in rows) / len(rows), 4) if rows else None

    return {
        "mode": mode, "n": n, "answerable": len(answerable), "unanswerable": len(unanswerable),
        "accuracy": share(results, "correct") or 0.0,
        "short_accuracy": share(results, "short_correct") or 0.0,
        "quote_accuracy": share(answerable, "quote_correct"),
        "cited": share(answerable, "cited") or 0.0,
        "abstention": share(unanswerable, "abstained"),
        "loops": sum(r["loop"] for r in results),
        "seconds_per_question": round(sum(r["timings"]["total_s"] or 0 for r in results) / n, 3)
        if n else 0.0,
        "results": results,
    }
