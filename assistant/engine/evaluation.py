"""Scoring answers against known ones (`memex eval`, bench/qa.py): a questions file, the
accepted answers and evidence paths, and the accuracy and citation rate of a run."""

from __future__ import annotations

import json
from pathlib import Path


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


def run_eval(engine, items: list[dict], mode: str, progress=None) -> dict:
    """Answer every question; the summary and per-question results."""
    results = []
    for index, item in enumerate(items):
        answer = engine.answer(item["question"], mode)
        correct, cited = score(answer.text, answer.sources, item["answers"], item["evidence"])
        results.append({
            "question": item["question"], "answer": answer.text, "correct": correct,
            "cited": cited, "expected": item["answers"], "evidence": item["evidence"],
            "sources": [s.public() for s in answer.sources], "timings": answer.timings,
            "status": answer.status, "prompt_tokens": answer.prompt_tokens,
        })
        if progress:
            progress(index + 1, results[-1])
    n = len(results)
    return {
        "mode": mode, "n": n,
        "accuracy": round(sum(r["correct"] for r in results) / n, 4) if n else 0.0,
        "cited": round(sum(r["cited"] for r in results) / n, 4) if n else 0.0,
        "seconds_per_question": round(sum(r["timings"]["total_s"] or 0 for r in results) / n, 3)
        if n else 0.0,
        "results": results,
    }
