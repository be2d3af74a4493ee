"""The answer engine over a real store (real SQLite, real files, the real tokenizer) with a
tiny random-initialised Llama standing in for the model: the tests are about the
pipeline (retrieval, dates, sources, modes, memory upkeep, stop, reflect), not the
wording. Sentence selection and the conversation store are tested on their own."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
import torch

from assistant.config import Config
from assistant.engine import prompting
from assistant.engine.conversations import ConversationStore, SourceRecord

TODAY = date(2024, 3, 31)
JOURNAL = {
    "daily/2024-02-03.md": "Went to the Leadmill with Anna to see The Hollow Ferns. "
                           "They played Paper Moth as the last encore.\n",
    "daily/2024-02-10.md": "Long run by the river, 14 km. Knee fine.\nDinner at Café Lune: "
                           "a cardamom bun and an oat flat white.\n",
    "notes/biscuit.md": "---\ndate: 2024-03-11\ntitle: Biscuit comes home\n---\n\n"
                        "Picked Biscuit up from Hollins Lane Rescue this morning. "
                        "The adoption fee was £185.\n",
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, model_dir) -> Path:
    """A 2-layer random Llama with the real tokenizer (fast; answers are noise)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    real = json.loads((model_dir / "config.json").read_text())
    config = LlamaConfig(vocab_size=real["vocab_size"], hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=8192, rope_theta=100000.0,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    for path in model_dir.iterdir():  # tokenizer files and the chat template
        if path.is_file() and path.suffix != ".safetensors" and path.name not in (
                "config.json", "generation_config.json", "memex-conversion.json"):
            shutil.copy(path, folder / path.name)
    return folder


def write_journal(root: Path, files: dict[str, str] = JOURNAL) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def journal_home(tmp_path, home, tokenizer, tiny_model_dir):
    """A data home with the little journal ingested (no embeddings) and a config that
    names the tiny model."""
    import ingest
    from assistant.config import set_value

    root = write_journal(tmp_path / "journal")
    store = ingest.open_store(home)
    ingest.add_source(store, root)
    ingest.run(store, tokenizer, embed=False)
    store.close()
    set_value(home, "model", str(tiny_model_dir))
    set_value(home, "embeddings", "false")
    set_value(home, "max_new_tokens", "6")
    set_value(home, "today", TODAY.isoformat())
    return home


def make_engine(home):
    from assistant.config import load_config
    from assistant.engine import Engine

    return Engine(home, load_config(home))


# -- sentence selection ---------------------------------------------------------------


class Passage:
    def __init__(self, text, date="2024-01-01", path="a.md"):
        self.text, self.date, self.path = text, date, path


def test_select_sentences_finds_the_line_and_its_neighbour():
    passages = [
        Passage("Weather was grey. Did the shopping.\n", "2024-01-01"),
        Passage("Long run: 32 km\nTime: 3:21:40\nLegs destroyed.", "2024-03-24"),
        Passage("Went climbing at Granite Works. Coffee after.", "2024-02-02"),
    ]
    chosen = prompting.select_sentences("How long did my 32 km long run take?", passages, limit=1)
    texts = [s.text for s in chosen]
    assert texts == ["Long run: 32 km", "Time: 3:21:40"]
    notes = prompting.format_notes(chosen)
    assert notes.splitlines() == ["[24 March 2024] Long run: 32 km. Time: 3:21:40."]


def test_sentences_keep_their_heading_and_the_best_entry_goes_last():
    passages = [
        Passage("# Travel log\n\n## 2023-05-18 · Lisbon\n\nLanded just after two. Taxi to the "
                "guesthouse.\n\n## 2023-05-21 · Sintra\n\nDay trip on the train.", "2023-05-18"),
        Passage("# Friday 26 May 2023\n\nHilly 7 km on the canal towpath.", "2023-05-26"),
    ]
    pairs = prompting.passage_sentences(passages[0].text)
    assert pairs[0] == ("Lisbon", "Landed just after two.")
    assert pairs[-1] == ("Sintra", "Day trip on the train.")
    assert prompting.passage_sentences(passages[1].text, title="Towpath") == [
        ("Towpath", "Hilly 7 km on the canal towpath.")]
    chosen = prompting.select_sentences("Where did we go on the day trip by train?", passages, limit=1,
                                        context=0)
    assert [(s.context, s.text) for s in chosen] == [("Sintra", "Day trip on the train.")]
    # Weakest entry first, best last (nearest the question), dates written out.
    chosen = prompting.select_sentences("day trip train towpath Sintra", passages, limit=2, context=0)
    lines = prompting.format_notes(chosen).splitlines()
    assert lines == ["[26 May 2023] Hilly 7 km on the canal towpath.",
                     "[18 May 2023 · Sintra] Day trip on the train."]


@pytest.mark.parametrize("line, expected", [
    ("# Sunday 1 January 2023", ""),
    ("## 2023-05-18 · Lisbon", "Lisbon"),
    ("* Result", "Result"),
    ("# 2024-03-05 · journal/daily/2024-03-05.md", ""),
    ("#+TITLE: Riverside Half Marathon", "Riverside Half Marathon"),
])
def test_heading_text(line, expected):
    assert prompting.heading_text(line) == expected


def test_possessives_meet_their_noun_and_the_whole_entry_counts(monkeypatch):
    assert prompting.content_words("my physio's name, Dad’s socks") == ["physio", "nam", "dad", "sock"]
    passages = [Passage("Long day at Northwind.", "2023-03-10"),
                Passage("The dashboard covers all nine depots. Northwind pays.", "2023-01-23"),
                Passage("Depots were closed.", "2023-02-01")]
    question = "How many depots does Northwind have?"
    # Every line shares one equally rare word with the question; only the second entry
    # holds both, so its lines come first.
    chosen = prompting.select_sentences(question, passages, limit=2, context=0)
    assert {s.passage_index for s in chosen} == {1}
    monkeypatch.setattr(prompting, "ENTRY_WEIGHT", 0.0)
    chosen = prompting.select_sentences(question, passages, limit=2, context=0)
    assert {s.passage_index for s in chosen} != {1}


def test_search_query_drops_the_question_phrase_only():
    assert prompting.search_query("How long was the Quiraing walk?") == "was the Quiraing walk?"
    assert prompting.search_query("How many books did I read?") == "books did I read?"
    assert prompting.search_query("How long?") == "How long?"  # nothing else left: kept
    assert prompting.search_query("Where is the longest run?") == "Where is the longest run?"


def test_relevant_sentences_floor_is_for_the_best_one():
    from assistant.engine import RELEVANCE_FLOOR, relevant_sentences

    def sentence(score):
        return prompting.Sentence("x", None, 0, 0, score=score)

    weak = [sentence(RELEVANCE_FLOOR * 0.9), sentence(0.1)]
    assert relevant_sentences(weak) == []
    mixed = [sentence(RELEVANCE_FLOOR * 2), sentence(RELEVANCE_FLOOR * 0.6), sentence(0.01)]
    assert [s.score for s in relevant_sentences(mixed)] == [s.score for s in mixed[:2]]


def test_split_sentences_drops_markup():
    text = "---\ndate: 2024-01-01\n---\n# 2024-03-05 · x.md\n- A [[Ellie|woman]] ran. She's fast!\n"
    assert prompting.split_sentences(text) == ["A woman ran.", "She's fast!"]


def test_reflection_helpers():
    texts = ["Ran with Ellie at Endcliffe. Felt happy.", "Ellie and Tom came round. Tired.",
             "Tom cooked. Happy again."]
    assert prompting.recurring_names(texts) == [("Ellie", 2), ("Tom", 2)]
    assert dict(prompting.mood_words(texts)) == {"happy": 2, "tired": 1}


# -- the engine over a real store ------------------------------------------------------


def test_retrieval_answer_has_sources_and_timings(journal_home):
    engine = make_engine(journal_home)
    pieces = []
    answer = engine.answer("What did I order at Café Lune?", "retrieval", on_token=pieces.append)
    assert answer.status == "complete"
    assert "".join(pieces).strip() == answer.text
    assert answer.sources and answer.sources[0].path == "daily/2024-02-10.md"
    assert "cardamom bun" in answer.sources[0].snippet
    assert answer.sources[0].date == "2024-02-10"
    assert set(answer.timings) == {"ttft_s", "total_s", "tokens_per_s"}
    assert 0 < answer.timings["ttft_s"] <= answer.timings["total_s"]
    assert 0 < answer.new_tokens <= 6
    assert answer.to_json().keys() == {"answer", "short", "quotes", "sources", "timings"}


def test_the_short_answer_is_a_clause_of_the_quotes_the_model_points_at(journal_home):
    engine = make_engine(journal_home)
    engine.config.max_new_tokens = 12
    question = "How much was the adoption fee?"
    answer = engine.answer(question, "retrieval")
    assert answer.prompt_tokens > 0 and answer.new_tokens > 0  # the model did point
    # the short answer is the user's own clause holding the number asked for, then the
    # quotes it comes from, verbatim from its entry
    assert answer.short == "The adoption fee was £185."
    assert answer.text.startswith(answer.short + "\n\n> ")
    assert any(answer.short in q.text for q in answer.quotes)


def test_without_grounding_the_model_writes_and_stems_start_it(journal_home):
    engine = make_engine(journal_home)
    engine.config.max_new_tokens = 12
    engine.config.grounded = False
    question = "How much was the adoption fee?"
    engine.config.answer_stems = True  # off by default since real diaries (issue 24)
    assert engine.answer(question, "retrieval").text.startswith("The adoption fee was")
    engine.config.answer_stems = False
    plain = engine.answer(question, "retrieval")
    assert not plain.text.startswith("The adoption fee was")
    assert plain.quotes and any("£185" in q.text for q in plain.quotes)


def test_nothing_relevant_says_so_without_inventing(journal_home):
    engine = make_engine(journal_home)
    answer = engine.answer("What is the capital of Mongolia?", "retrieval")
    assert answer.status == "nothing_found"
    assert answer.sources == []
    assert answer.short == "The notes don't say."
    assert answer.text.startswith("The notes don't say.")


def test_dates_in_question_filter_entries(journal_home):
    engine = make_engine(journal_home)
    answer = engine.answer("What did I do in February 2024?", "retrieval")
    assert answer.date_range.label == "February 2024"
    assert answer.sources
    assert all(s.date.startswith("2024-02") for s in answer.sources)
    # A date with no entries at all: the engine says it looked elsewhere.
    other = engine.answer("Where did I adopt Biscuit from in 2019?", "retrieval")
    assert any("2019" in note for note in other.notes)
    assert other.sources[0].path == "notes/biscuit.md"


def test_stop_keeps_partial_answer(journal_home):
    from assistant.engine import Stopped

    engine = make_engine(journal_home)
    engine.config.answer_stems = True
    engine.config.grounded = False  # the tiny model's tokens are in no quote: let it go on
    seen = []

    def on_token(piece):
        seen.append(piece)
        if len(seen) == 3:  # the stem, then two generated tokens
            raise Stopped()

    answer = engine.answer("What did I order at Café Lune?", "retrieval", on_token=on_token)
    assert seen[0] == "At Café Lune, I ordered"
    assert answer.status == "partial"
    assert answer.new_tokens == 2
    assert answer.text.startswith("At Café Lune, I ordered")


def test_dense_mode_reads_the_end_of_the_stream(journal_home):
    engine = make_engine(journal_home)
    answer = engine.answer("Which band played Paper Moth?", "dense")
    assert answer.prompt_tokens > engine.stream_tokens()  # the whole (small) stream fits
    assert answer.prompt_tokens <= 8192
    assert any(s.path == "daily/2024-02-03.md" for s in answer.sources)
    # The window's KV is kept for the next question, even one of another length.
    window_key = engine._dense_prefix[0]
    again = engine.answer("What did I eat at Café Lune on the tenth of February, with Anna?", "dense")
    assert again.status == "complete"
    assert engine._dense_prefix[0] == window_key


def test_memory_modes_catch_up_and_report_lag(journal_home, monkeypatch):
    import assistant.engine.memory as engine_memory

    engine = make_engine(journal_home)
    monkeypatch.setattr(engine_memory, "CATCH_UP_LIMIT", 10)
    behind = engine.answer("What did I order at Café Lune?", "hybrid")
    assert behind.memory_lag == engine.stream_tokens()
    assert any("behind" in note for note in behind.notes)
    assert behind.sources and behind.sources[0].path == "daily/2024-02-10.md"
    monkeypatch.setattr(engine_memory, "CATCH_UP_LIMIT", 10**6)
    caught_up = engine.answer("What did I order at Café Lune?", "memory")
    assert caught_up.memory_lag == 0 and not caught_up.notes
    assert engine.memory_info()["tokens"] == engine.stream_tokens()
    # Answering never writes the question into the long-term memory.
    assert make_engine(journal_home).memory_info()["tokens"] == engine.stream_tokens()


def test_memory_answers_read_the_rows_of_what_search_found(journal_home, tokenizer):
    """With rows kept (the default), a memory answer reads the stored rows of the entries
    search found in place of the history's last tokens, and says so: the spans are those
    entries' tokens, the best (the cited entry) nearest the question."""
    from longnet.memory import ROWS_FILE

    engine = make_engine(journal_home)
    engine.catch_up()
    assert (engine.memory_dir / ROWS_FILE).is_file()
    answer = engine.answer("What did I order at Café Lune?", "memory")
    parts = answer.to_json()["memory"]
    assert parts["window"] == "recalled" and parts["far_levels"] == "shut"
    assert parts["history_tokens"] == engine.stream_tokens()
    best = parts["recalled"][-1]
    assert best["path"] == answer.sources[0].path == "daily/2024-02-10.md"
    text = tokenizer.decode(engine.store.stream.read(best["start"], best["end"]))
    assert "Café Lune" in text
    assert parts["recalled_tokens"] == sum(p["end"] - p["start"] for p in parts["recalled"])
    assert parts["recalled_tokens"] <= engine.recall_tokens
    # What the reader learns from (``memory_turn``) is what this answer read.
    turn = engine.memory_turn("What did I order at Café Lune?")
    assert turn.recall == [(p["start"], p["end"]) for p in parts["recalled"]]
    assert len(turn.prompt_ids) == answer.prompt_tokens
    assert engine.tokenizer.decode(turn.prompt_ids).rstrip().endswith("assistant")
    # The benchmarks' baseline reads the same passages again as text.
    engine.recall_as = "text"
    again = engine.answer("What did I order at Café Lune?", "memory")
    assert again.memory["window"] == "recalled_text"
    assert again.memory["recalled"] == parts["recalled"]
    engine.recall_as = "rows"
    # Rows that cover none of the passages (kept only from now on): the window reads the
    # history's last tokens.
    memory = engine.load_memory()
    kept = memory.rows
    memory.keep_rows(engine.memory_dir / "later")
    uncovered = engine.answer("What did I order at Café Lune?", "memory")
    assert uncovered.memory["window"] == "last_tokens"
    memory.rows = kept
    # Without rows, the memory answer reads the last tokens of the history, as before.
    engine.config.memory_rows = False
    plain = engine.answer("What did I order at Café Lune?", "memory")
    assert plain.to_json()["memory"]["window"] == "last_tokens"
    # Retrieval answers read no memory.
    assert "memory" not in engine.answer("What did I order at Café Lune?",
                                         "retrieval").to_json()


def test_forgotten_text_keeps_the_memory_out_until_rebuilt(journal_home):
    engine = make_engine(journal_home)
    engine.catch_up()
    engine.store.mark_memory_rebuild("forget")
    answer = engine.answer("What did I order at Café Lune?", "memory")
    assert any("rebuild" in note for note in answer.notes)


def test_reflect_counts_entries_and_weeks(journal_home):
    engine = make_engine(journal_home)
    reflection = engine.reflect(date(2024, 2, 1), date(2024, 2, 29), "February 2024")
    assert reflection.entries == 2
    assert reflection.dates == ["2024-02-03", "2024-02-10"]
    assert sum(count for _, count in reflection.weekly) == 2
    assert reflection.weekly[0][0] == "2024-01-29"
    assert reflection.timings["total_s"] > 0 and reflection.sources
    empty = engine.reflect(date(2020, 1, 1), date(2020, 1, 31), "January 2020")
    assert empty.entries == 0 and "no entries" in empty.text


# -- conversations -----------------------------------------------------------------


def test_conversations_keep_partial_answers(tmp_path):
    chats = ConversationStore(tmp_path)
    conv = chats.new_conversation()
    chats.add_message(conv, "user", "When did Biscuit come home?")
    answer = chats.add_message(conv, "assistant", "", status="streaming")
    chats.update_message(answer, content="On 11 Ma")
    chats.close()  # the process dies mid-answer
    again = ConversationStore(tmp_path)
    assert again.mark_interrupted() == 1
    messages = again.messages(conv)
    assert messages[1].content == "On 11 Ma" and messages[1].status == "partial"
    assert again.conversations()[0].title == "When did Biscuit come home?"
    assert (tmp_path / "chat.db").stat().st_mode & 0o777 == 0o600
    again.add_sources(answer, [SourceRecord(path="notes/b.md", date="2023-03-11", snippet="s")])
    exported = again.export()
    assert exported[0]["messages"][1]["sources"] == [
        {"path": "notes/b.md", "date": "2023-03-11", "snippet": "s"}]


def test_config_values_are_checked(tmp_path):
    from assistant.config import ConfigError, load_config, set_value

    assert load_config(tmp_path) == Config()
    set_value(tmp_path, "mode", "retrieval")
    set_value(tmp_path, "levels", "2048:1,4096:2")
    assert load_config(tmp_path).mode == "retrieval"
    with pytest.raises(ConfigError, match="one of"):
        set_value(tmp_path, "mode", "psychic")
    with pytest.raises(ConfigError, match="unknown setting"):
        set_value(tmp_path, "colour", "blue")
    with pytest.raises(ConfigError, match="levels"):
        set_value(tmp_path, "levels", "2048:3")
    with pytest.raises(ConfigError, match="integer|int"):
        set_value(tmp_path, "passages", "many")
    assert load_config(tmp_path).levels == "2048:1,4096:2"


def test_hybrid_turns_leave_untrained_far_levels_out(journal_home, monkeypatch):
    """Untrained far levels only perturb a hybrid turn's reading of its notes, or a memory
    turn's reading of recalled rows: the turn runs with them shut (gates put back after);
    memory mode over the history's last tokens and a trained model keep them."""
    from longnet.memory import Memory
    from longnet.model import SHUT_GATE

    engine = make_engine(journal_home)
    engine.catch_up()
    far_gates = lambda: engine.longnet_model.layers[0].self_attn.level_bias[:, 1:].detach().clone()
    closed = far_gates()
    assert float(closed.max()) > SHUT_GATE
    seen = []
    generate = Memory.generate

    def spy(self, *args, **kwargs):
        seen.append(far_gates())
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(Memory, "generate", spy)
    engine.answer("What did I order at Café Lune?", "hybrid")
    recalled = engine.answer("What did I order at Café Lune?", "memory")
    engine.config.memory_rows = False  # memory mode reads the history's last tokens
    last_tokens = engine.answer("What did I order at Café Lune?", "memory")
    engine._far_levels_trained = True  # as after `memex train`
    engine.answer("What did I order at Café Lune?", "hybrid")
    assert bool((seen[0] == SHUT_GATE).all())
    assert recalled.memory["window"] == "recalled" and recalled.memory["far_levels"] == "shut"
    assert bool((seen[1] == SHUT_GATE).all())
    assert last_tokens.memory["window"] == "last_tokens"
    assert last_tokens.memory["far_levels"] == "open"
    torch.testing.assert_close(seen[2], closed)
    torch.testing.assert_close(seen[3], closed)
    torch.testing.assert_close(far_gates(), closed)


def test_warm_up_loads_in_the_background_once(journal_home, monkeypatch):
    """warm_up() loads the tokenizer, the model, the memory and the packed decode weights
    in a thread; an answer that starts meanwhile waits for that load instead of loading
    again, and reads the same objects."""
    import longnet

    loads = []
    original = longnet.LongNetLM.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(longnet.LongNetLM, "from_pretrained", classmethod(counting))
    engine = make_engine(journal_home)
    thread = engine.warm_up("hybrid")
    answer = engine.answer("What did I order at Café Lune?", "hybrid")
    thread.join(60)
    assert not thread.is_alive() and answer.status == "complete"
    assert len(loads) == 1
    model = engine.longnet_model
    assert engine.load_memory() is engine._memory is not None
    kind = engine.config.decode_weights
    assert kind == "int4" and model.pack_for_decoding(kind) is model.pack_for_decoding(kind)


def test_a_name_no_entry_mentions_gets_the_notes_dont_say(journal_home):
    engine = make_engine(journal_home)
    assert engine.unknown_names("What did Biscuit's vet say at Stonehenge?") == ["Stonehenge"]
    assert engine.unknown_names("What did I order at Café Lune?") == []
    answer = engine.answer("What did I order at Café Stonehenge?", "retrieval")
    assert answer.status == "nothing_found" and answer.short == "The notes don't say."
    assert any("Stonehenge" in note for note in answer.notes)
    # the closest sentences are still shown, as written
    assert answer.quotes and all(q.text in (journal_home.parent / "journal" / q.path).read_text()
                                 for q in answer.quotes)


@pytest.mark.parametrize("persona", ["coach", "partner", "tutor", "Speak like a ship's log."])
def test_a_persona_changes_the_prompt_never_the_quotes(journal_home, persona):
    from assistant.config import set_value

    question = "How much was the adoption fee?"
    plain = make_engine(journal_home).answer(question, "retrieval")
    set_value(journal_home, "persona", persona)
    engine = make_engine(journal_home)
    system = prompting.answer_messages(question, "notes", persona=engine.config.persona)[0]
    assert system["content"] != prompting.SYSTEM_PROMPT
    assert system["content"].endswith(prompting.SYSTEM_PROMPT)  # the rules come last
    reflect = prompting.reflect_messages("March 2024", "notes", persona=persona)[0]["content"]
    assert reflect != prompting.REFLECT_SYSTEM and reflect.endswith(prompting.REFLECT_SYSTEM)
    answer = engine.answer(question, "retrieval")
    assert [q.public() for q in answer.quotes] == [q.public() for q in plain.quotes]
    assert answer.quotes and "£185" in answer.quotes[0].text
    assert [s.path for s in answer.sources] == [s.path for s in plain.sources]


def test_a_persona_is_checked(journal_home):
    from assistant.config import ConfigError, set_value

    with pytest.raises(ConfigError):
        set_value(journal_home, "persona", "x" * 301)
    assert set_value(journal_home, "persona", "tutor").persona == "tutor"


def test_people_are_names_not_titles_months_or_directions():
    texts = ["Dined with Sir W. Penn and Mr. Duke, K.C. in June; Lord Hale was down the river.",
             "In the evening Sir W. Penn came, and Captain Rolt. Mr. Duke was low, I was sad.",
             "Walked down to the harbour with Captain Rolt in June. Lord Hale wrote."]
    names = dict(prompting.recurring_names(texts))
    assert names == {"Penn": 2, "Duke": 2, "Rolt": 2, "Hale": 2}
    assert not set(names) & (prompting.BARE_TITLES | {"June"})
    assert dict(prompting.mood_words(texts)) == {"sad": 1}  # "down" and "low" are places here


def test_people_hidden_as_initials_or_accented_are_names_and_labels_are_not():
    texts = ["Went to the Museum with E⸺ and Tomás. Mood: fine. Steps: 9,000 (Jan 3).",
             "Tea with E⸺; Tomás rang. I—I could not speak. Mood: low.",
             "Wrote to H⸺ about Tomás and E⸺. Mood: good (Jan 9)."]
    names = dict(prompting.recurring_names(texts))
    assert names == {"E⸺": 3, "Tomás": 3}
    assert dict(prompting.recurring_names(texts, min_entries=1)).keys() >= {"H⸺", "Museum"}


def test_what_stands_out_is_the_writers_unusual_sentence_with_its_date():
    everyday = "Walked to the office and worked on the report until late in the evening."
    entries = [("1913-03-07", everyday), ("1913-03-09", everyday + " Read a little before bed."),
               ("1913-03-17", everyday + " Thought it over and decided to ask Emma to marry me!"),
               ("1913-03-18", "Short.")]
    common = {"walked", "office", "worked", "report", "late", "evening", "read", "little", "bed"}

    def frequency(words):  # this writer's everyday words are in most of 100 entries
        return {w: 90 for w in words if w in common}, 100

    picked = prompting.distinctive_sentences(entries, frequency, limit=2)
    assert picked[-1] == ("1913-03-17", "Thought it over and decided to ask Emma to marry me!")
    assert [d for d, _ in picked] == sorted(d for d, _ in picked)  # oldest first
    assert all(d.startswith("1913-03") for d, _ in picked)


def test_a_reflection_quotes_only_its_period_under_their_dates(journal_home):
    engine = make_engine(journal_home)
    reflection = engine.reflect(date(2024, 2, 1), date(2024, 2, 29), "February 2024")
    lines = [line for line in reflection.text.splitlines() if line.startswith("- ")]
    assert lines, reflection.text
    entries = {"3 February 2024": JOURNAL["daily/2024-02-03.md"],
               "10 February 2024": JOURNAL["daily/2024-02-10.md"]}
    for line in lines:  # "- 3 February 2024: “…”": a sentence of that day's entry, verbatim
        day, _, quoted = line[2:].partition(": ")
        assert quoted.strip("“”") in entries[day]
    assert "March" not in reflection.text and "2024-03" not in str(reflection.to_json()["sources"])
    assert all(s.date.startswith("2024-02") for s in reflection.sources)


def test_a_stutter_is_not_a_closing_sentence():
    from assistant.engine.reflection import reads_as_a_sentence

    assert not reads_as_a_sentence('In  "The  The  The  The  " (  "  " )  (')
    assert not reads_as_a_sentence("The 19th.")
    assert reads_as_a_sentence("A month of long runs and a new job.")


def test_a_sentence_written_on_two_days_stands_out_once():
    same = "Bouldering at Granite Works with Tomás; finally got the blue V4 in the cave."
    picked = prompting.distinctive_sentences(
        [("2024-09-08", same), ("2024-09-10", same), ("2024-09-13", "Maya's first solo exhibition "
                                                                    "opened tonight at Bank Street.")],
        lambda words: ({}, 10), limit=3)
    assert [s for _, s in picked].count(same) == 1 and len(picked) == 2


def test_a_when_question_is_answered_with_the_quotes_date(journal_home):
    engine = make_engine(journal_home)
    pieces = []
    answer = engine.answer("When did I pick up Biscuit from the rescue?", "retrieval",
                           on_token=pieces.append)
    assert answer.short == "On 11 March 2024."
    assert answer.quotes[0].date == "2024-03-11" and "Biscuit" in answer.quotes[0].text
    assert "".join(pieces) == answer.text and answer.timings["ttft_s"] is not None


def test_a_how_many_times_question_counts_the_entries_that_mention_it(journal_home):
    engine = make_engine(journal_home)
    answer = engine.answer("How many times did I write about the Hollow Ferns?", "retrieval")
    assert answer.short == "In one entry, on 3 February 2024."
    assert [q.path for q in answer.quotes] == ["daily/2024-02-03.md"]
    assert "Hollow Ferns" in answer.quotes[0].text
    assert [s.path for s in answer.sources] == ["daily/2024-02-03.md"]
    # a period with no such entry: answered as any question, never "0 entries"
    other = engine.answer("How many times in 2023 did I write about the Hollow Ferns?",
                          "retrieval")
    assert "entries" not in other.short and "entry" not in other.short


def test_a_thing_no_entry_names_gets_the_notes_dont_say(journal_home):
    engine = make_engine(journal_home)
    assert engine.unknown_things("What did the walrus order at Café Lune?") == ["walrus"]
    # verbs, -ly words and units are paraphrased too often to count
    assert engine.unknown_things("How many kilos of the monthly bun did I order?") == []
    answer = engine.answer("What did the walrus order at Café Lune?", "retrieval")
    assert answer.status == "nothing_found" and answer.short == "The notes don't say."
    assert any("walrus" in note for note in answer.notes)


def test_one_process_at_a_time_extends_the_memory(journal_home):
    """Two engines on one home (a build next to a chat or the warm server): while one holds
    the memory writer, the other's answer reads what is saved without catching up, and
    then finds and loads the memory the first one saved."""
    from assistant.engine.memory import MemoryBusy

    builder, answerer = make_engine(journal_home), make_engine(journal_home)
    answerer.load_memory()  # the chat's memory, loaded before the build
    with builder.memory_writer():
        with pytest.raises(MemoryBusy), answerer.memory_writer(wait=False):
            pass
        behind = answerer.answer("What did I order at Café Lune?", "memory")
        assert behind.memory_lag == builder.stream_tokens() > 0  # no catch-up meanwhile
        builder.catch_up()  # re-entrant: the builder's own lock
    assert answerer.reload_memory_if_changed()  # the build's save replaced the loaded one
    assert answerer.load_memory().tokens == builder.stream_tokens()
    again = answerer.answer("What did I order at Café Lune?", "memory")
    assert again.memory_lag == 0


class FixedShare:
    """A machine as busy as the test says (``CpuShare``'s interface)."""

    def __init__(self, value: float):
        self.value = value

    def others(self) -> float:
        return self.value


def test_watch_extends_the_memory_only_while_the_machine_is_idle(journal_home):
    """`memex watch`'s upkeep: nothing is read while other programs keep the CPUs busy;
    once they are idle the memory catches up with the stream and says so."""
    import threading
    import time

    from assistant.engine.upkeep import CpuShare, keep_memory_current

    said: list[str] = []
    stop = threading.Event()
    share = FixedShare(0.9)
    upkeep = threading.Thread(target=keep_memory_current,
                              args=(lambda: make_engine(journal_home), stop, said.append),
                              kwargs={"share": share, "every": 0.05}, daemon=True)
    upkeep.start()
    try:
        time.sleep(0.6)
        assert make_engine(journal_home).memory_info()["tokens"] == 0  # busy: left alone
        share.value = 0.0
        deadline = time.monotonic() + 120
        engine = make_engine(journal_home)
        while engine.memory_info()["tokens"] < engine.stream_tokens():
            assert time.monotonic() < deadline, said
            time.sleep(0.1)
    finally:
        stop.set()
        upkeep.join(60)
    assert not upkeep.is_alive()
    assert any(line.startswith("memory up to date") for line in said), said
    assert 0.0 <= CpuShare().others() <= 1.0


class CountingEmbedder:
    """An embedder that records what it was asked to embed (``Embedder``'s interface):
    a vector of each text's length, so different texts differ."""

    dim = 3

    def __init__(self):
        self.seen: list[str] = []

    def embed(self, texts):
        import numpy as np

        self.seen += texts
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)


def test_sentences_are_embedded_once_per_engine(journal_home, monkeypatch):
    """A long-lived engine (the warm server) embeds a sentence it has seen before from its
    cache: only new sentences reach the embedder, in the order asked, and the cache stays
    bounded."""
    import numpy as np

    import assistant.engine.engine as engine_module

    engine = make_engine(journal_home)
    engine.config.embeddings = True
    engine._embedder = CountingEmbedder()
    first = engine.embed(["a dog", "the cat sat", "a dog"])
    assert engine._embedder.seen == ["a dog", "the cat sat"]
    again = engine.embed(["the cat sat", "new words here"])
    assert engine._embedder.seen[2:] == ["new words here"]
    np.testing.assert_array_equal(again[0], first[1])
    assert engine.embed([]).shape == (0, 3)
    monkeypatch.setattr(engine_module, "EMBED_CACHE", 2)
    engine.embed(["one more"])
    assert len(engine._embedded) == 2 and "one more" in engine._embedded


def test_pre_embedding_fills_the_cache_with_what_questions_embed(journal_home):
    """The warm server's idle work: every sentence ``gather`` would embed for any chunk is
    embedded ahead (the same texts, headings included), so a question embeds nothing but
    itself; it stops when asked."""
    engine = make_engine(journal_home)
    engine.config.embeddings = True
    engine._embedder = CountingEmbedder()
    assert engine.pre_embed(should_stop=lambda: True) == 0
    count = engine.pre_embed(batch=3)
    assert count == len(engine._embedder.seen) == len(set(engine._embedder.seen)) > 0
    assert engine.pre_embed() == 0  # all there already
    engine.embed(["warm up"])  # (search's probe, embedded once by any warm engine)
    before = len(engine._embedder.seen)
    passages, sentences, _ = engine.gather("What did I order at Café Lune?", None)
    assert passages and sentences
    assert len(engine._embedder.seen) == before + 1  # the question alone
