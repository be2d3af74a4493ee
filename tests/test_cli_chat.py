"""`memex ask / eval / reflect / export / config` through Typer's CliRunner, over a real
store with the tiny random Llama (the shapes and contracts are under test here)."""

from __future__ import annotations

import json

from test_engine import JOURNAL, journal_home, tiny_model_dir  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from assistant.cli import app

runner = CliRunner()


def invoke(home, *args):
    return runner.invoke(app, ["--home", str(home), *args])


def test_ask_json_contract(journal_home):
    result = invoke(journal_home, "ask", "What did I order at Café Lune?", "--mode", "retrieval",
                    "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"answer", "short", "quotes", "sources", "timings"}
    assert set(data["timings"]) == {"ttft_s", "total_s", "tokens_per_s"}
    assert data["sources"][0] == {"path": "daily/2024-02-10.md", "date": "2024-02-10",
                                  "snippet": data["sources"][0]["snippet"]}
    assert "cardamom bun" in data["sources"][0]["snippet"]
    # the answer: the short answer, then its quotes verbatim with their dates and files
    assert data["answer"].startswith(data["short"])
    quote = data["quotes"][0]
    assert set(quote) == {"date", "path", "text"}
    assert (quote["date"], quote["path"]) == ("2024-02-10", "daily/2024-02-10.md")
    assert "cardamom bun" in quote["text"] and quote["text"] in data["answer"]
    entry = journal_home.parent / "journal" / "daily" / "2024-02-10.md"
    assert quote["text"] in entry.read_text(encoding="utf-8")


def test_ask_streams_then_lists_sources_and_keeps_the_conversation(journal_home):
    from assistant.engine.conversations import ConversationStore

    result = invoke(journal_home, "ask", "What did I order at Café Lune?", "--mode", "retrieval")
    assert result.exit_code == 0, result.output
    assert "Sources" in result.output and "daily/2024-02-10.md" in result.output
    follow = invoke(journal_home, "ask", "And where did I run?", "--mode", "retrieval", "--continue")
    assert follow.exit_code == 0, follow.output
    chats = ConversationStore(journal_home)
    assert len(chats.conversations()) == 1
    messages = chats.messages(chats.latest_conversation())
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1].sources[0].path == "daily/2024-02-10.md"


def test_ask_errors_are_clear(home, journal_home):
    bad_mode = invoke(journal_home, "ask", "hi", "--mode", "psychic")
    assert bad_mode.exit_code == 1 and "unknown mode" in bad_mode.output
    assert "Traceback" not in bad_mode.output


def test_ask_without_notes_says_what_to_do(home):
    result = invoke(home, "ask", "Where do my parents live?")
    assert result.exit_code == 1
    assert "memex add" in result.output


def test_eval_json_contract(journal_home, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"question": "What did I order at Café Lune?", "answers": ["cardamom"],
                    "evidence": ["daily/2024-02-10.md"]}) + "\n\n"
        + json.dumps({"question": "Which band played Paper Moth?", "answers": ["Hollow Ferns"],
                      "evidence": ["daily/2024-02-03.md"]}) + "\n")
    result = invoke(journal_home, "eval", str(questions), "--mode", "retrieval", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"mode", "n", "accuracy", "cited", "results", "short_accuracy", "quote_accuracy",
            "abstention", "loops"} <= set(report)
    assert all({"answer", "short", "quotes"} <= set(r) for r in report["results"])
    # the quotes are the entries' own sentences: both hold their answer
    assert report["quote_accuracy"] == 1.0
    assert report["abstention"] is None  # no unanswerable question was asked
    assert report["mode"] == "retrieval" and report["n"] == 2
    assert report["cited"] == 1.0  # both evidence files are among the sources
    # The tiny model's words are noise: accuracy is whatever share it got right.
    assert report["accuracy"] == sum(r["correct"] for r in report["results"]) / 2
    assert all(r["correct"] == ("cardamom" in r["answer"].lower() or "hollow ferns" in r["answer"].lower())
               for r in report["results"])


def test_eval_rejects_bad_lines(journal_home, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "ok?", "answers": ["x"], "evidence": []}\n{not json\n')
    result = invoke(journal_home, "eval", str(questions))
    assert result.exit_code == 1
    assert "q.jsonl:2" in result.output and "Traceback" not in result.output


def test_score_is_case_insensitive_containment():
    from assistant.engine.evaluation import score
    from assistant.engine.conversations import SourceRecord

    sources = [SourceRecord(path="notes/a.md", date=None, snippet="")]
    assert score("It was LISBON.", sources, ["Lisbon"], ["notes/a.md"]) == (True, True)
    assert score("Porto", sources, ["Lisbon"], ["notes/b.md"]) == (False, False)


def test_reflect_json(journal_home):
    result = invoke(journal_home, "reflect", "--since", "2024-02-01", "--until", "2024-02-29", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["entries"] == 2 and data["dates"] == ["2024-02-03", "2024-02-10"]
    assert data["since"] == "2024-02-01" and data["until"] == "2024-02-29"
    both = invoke(journal_home, "reflect", "--week", "--month")
    assert both.exit_code == 1 and "pick one period" in both.output


def test_export_writes_private_markdown_and_json(journal_home, tmp_path):
    invoke(journal_home, "ask", "What did I order at Café Lune?", "--mode", "retrieval")
    out = tmp_path / "export"
    result = invoke(journal_home, "export", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["conversations"] == 1 and summary["documents"] == len(JOURNAL)
    conversations = json.loads((out / "conversations.json").read_text())
    assert conversations[0]["messages"][0]["content"] == "What did I order at Café Lune?"
    assert "daily/2024-02-10.md" in (out / "conversations.md").read_text()
    assert "notes/biscuit.md" in (out / "index.md").read_text()
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600


def test_config_show_and_set(home):
    shown = invoke(home, "config", "show", "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["mode"] == "hybrid"
    assert invoke(home, "config", "set", "mode", "retrieval").exit_code == 0
    assert json.loads(invoke(home, "config", "show", "--json").stdout)["mode"] == "retrieval"
    bad = invoke(home, "config", "set", "dtype", "float8")
    assert bad.exit_code == 1 and "dtype must be one of" in bad.output
    assert (home / "config.toml").stat().st_mode & 0o777 == 0o600




def test_reflect_opens_on_the_latest_month_and_an_empty_period_names_the_nearest(journal_home):
    result = invoke(journal_home, "reflect", "--json")  # no period given
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["period"] == "March 2024, the latest month with entries"
    assert (data["since"], data["until"]) == ("2024-03-01", "2024-03-31")
    assert data["dates"] and all(d.startswith("2024-03") for d in data["dates"])
    empty = json.loads(invoke(journal_home, "reflect", "--since", "2023-06-01", "--until",
                              "2023-06-30", "--json").stdout)
    assert empty["entries"] == 0
    assert empty["reflection"] == ("There are no entries from 2023-06-01 to 2023-06-30. "
                                   "The nearest are from February 2024 (after).")
    later = json.loads(invoke(journal_home, "reflect", "--since", "2024-02-04", "--until",
                              "2024-02-09", "--json").stdout)
    assert later["reflection"].endswith("The nearest are from February 2024 (before) and "
                                        "February 2024 (after).")
