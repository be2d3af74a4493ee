"""bench/qa.py's bookkeeping: halves of the question file and their rows (no model)."""

from __future__ import annotations

from bench_loader import load_bench

qa = load_bench("qa")
ITEMS = [{"question": f"q{i}", "answers": ["x"], "evidence": ["a.md"]} for i in range(7)]
NUMBER = {item["question"]: index for index, item in enumerate(ITEMS)}


def result(question, correct, cited, total_s=1.0):
    return {"question": question, "correct": correct, "cited": cited, "prompt_tokens": 100,
            "timings": {"total_s": total_s, "ttft_s": total_s / 2}}


def test_halves_are_numbered_from_zero_in_the_file():
    assert [i["question"] for i in qa.select_items(ITEMS, "even")] == ["q0", "q2", "q4", "q6"]
    assert [i["question"] for i in qa.select_items(ITEMS, "odd")] == ["q1", "q3", "q5"]
    assert [i["question"] for i in qa.select_items(ITEMS, "odd", every=2)] == ["q1", "q5"]
    assert [i["question"] for i in qa.select_items(ITEMS, None, limit=2)] == ["q0", "q1"]


def test_a_mode_row_then_its_even_and_odd_questions_apart():
    results = [result("q0", True, True), result("q1", False, True),
               result("q2", True, False), result("q3", False, False)]
    rows = qa.summarise_halves("retrieval", results, NUMBER)
    assert [(r["mode"], r["n"], r["accuracy"], r["cited"]) for r in rows] == [
        ("retrieval", 4, 0.5, 0.5),
        ("retrieval, even-numbered", 2, 1.0, 0.5),
        ("retrieval, odd-numbered", 2, 0.0, 0.5)]
    # One half only: no split rows.
    assert len(qa.summarise_halves("hybrid", results[::2], NUMBER)) == 1


def test_recall_table_splits_by_the_question_number():
    rows = [{"index": 1, "question": "q1", "in_prompt": True, "cited": True, "in_searched": True},
            {"index": 3, "question": "q3", "in_prompt": False, "cited": True, "in_searched": True}]
    table = qa.recall_table(rows)
    assert "| odd-numbered | 2 | 50% | 100% | 100% |" in table
    assert "| even-numbered | 0 | - | - | - |" in table
    assert "#3 q3" in table
