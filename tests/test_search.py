"""Search reads what describes an entry (title, front-matter tags, path words) as well
as its text: a real SQLite store built by the real ingest pipeline and tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

import ingest
from ingest.search import meta_ranking, period_ranking, search

FILES = {
    "notes/proposal.md": "---\ndate: 2024-11-16\ntitle: She said yes\ntags: [maya, big-day]\n---\n\n"
                         "Asked Maya to marry me at sunrise on Stanage Edge.\n",
    "notes/reviews/2023-year-in-review.md": "---\ndate: 2023-12-31\ntitle: 2023 in review\n---\n\n"
                                            "- Books finished: 19\n- Distance run: 966 km\n",
    "daily/2024-11-20.md": "# Wednesday 20 November 2024\n\nMaya came home late from the studio.\n",
    "daily/2023-05-02.md": "# Tuesday 2 May 2023\n\nBooked the flights, booking reference QX7R2M.\n",
}


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def ingested(tmp_path, tokenizer, files):
    """A store over ``files`` written to a journal folder, ingested (no embeddings)."""
    root = tmp_path / "journal"
    write(root, files)
    with ingest.open_store(tmp_path / "home", tokenizer) as opened:
        ingest.add_source(opened, root)
        ingest.run(opened, embed=False)
        opened.root = root
        yield opened


@pytest.fixture
def store(tmp_path, tokenizer):
    yield from ingested(tmp_path, tokenizer, FILES)


def test_a_word_only_in_the_file_name_finds_the_entry(store):
    # "propose" is nowhere in the text; the file is notes/proposal.md (porter: propos).
    assert [r.path for r in search(store, "propose Stanage")][:1] == ["notes/proposal.md"]
    found = search(store, "propose")
    assert [r.path for r in found] == ["notes/proposal.md"]
    assert found[0].title == "She said yes"


def test_titles_and_tags_are_searchable_and_dates_still_filter(store):
    assert [r.path for r in search(store, "said yes")] == ["notes/proposal.md"]
    assert [r.path for r in search(store, "big-day")] == ["notes/proposal.md"]
    assert [r.path for r in search(store, "review")] == ["notes/reviews/2023-year-in-review.md"]
    assert search(store, "review", since="2024-01-01") == []
    # Digits of dated file names are not words of the description.
    assert meta_ranking(store, "2024") == []


def test_the_description_index_follows_renames_and_deletes(store):
    assert meta_ranking(store, "proposal")
    (store.root / "notes" / "proposal.md").rename(store.root / "notes" / "sunrise.md")
    ingest.run(store, embed=False)
    assert meta_ranking(store, "proposal") == []
    assert [r.path for r in search(store, "sunrise")][0] == "notes/sunrise.md"
    (store.root / "notes" / "sunrise.md").unlink()
    ingest.run(store, embed=False)
    assert search(store, "said yes") == [] and search(store, "sunrise") == []


PERIOD_FILES = {
    "reviews/2023-10.md": "---\ndate: 2023-10-31\ntitle: October 2023 review\n---\n\n- Distance run: 142 km\n",
    "reviews/2023-11.md": "---\ndate: 2023-11-30\ntitle: November 2023 review\n---\n\n- Distance run: 80 km\n",
    "reviews/2023.md": "---\ndate: 2023-12-31\ntitle: 2023, looking back\n---\n\n- Running: 966 km\n",
    "running/2023-10-15.md": "---\ndate: 2023-10-15\ntitle: Long run\n---\n\nRan 19 km along the river, "
                             "my longest run of October 2023 and a good run all round.\n",
}


@pytest.fixture
def period_store(tmp_path, tokenizer):
    yield from ingested(tmp_path, tokenizer, PERIOD_FILES)


def paths_of(store, chunk_ids):
    marks = ",".join("?" * len(chunk_ids))
    rows = dict(store.db.execute(
        f"SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.document_id "
        f"WHERE c.id IN ({marks})", chunk_ids).fetchall())
    return [rows[i] for i in chunk_ids]


def test_period_ranking_finds_the_entry_titled_with_the_month_or_year(period_store):
    assert paths_of(period_store, period_ranking(period_store, (2023, 10))) == ["reviews/2023-10.md"]
    # A year's own summary, not the months of that year.
    assert paths_of(period_store, period_ranking(period_store, (2023, None))) == ["reviews/2023.md"]
    assert period_ranking(period_store, (2022, None)) == []


def test_search_with_a_period_ranks_its_summary_first(period_store):
    plain = search(period_store, "run", since="2023-10-01", until="2023-10-31")
    assert plain[0].path == "running/2023-10-15.md"  # more "run" in the text
    with_period = search(period_store, "run", since="2023-10-01", until="2023-10-31",
                         period=(2023, 10))
    assert with_period[0].path == "reviews/2023-10.md"
