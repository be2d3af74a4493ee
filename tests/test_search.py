"""Search reads what describes an entry (title, front-matter tags, path words) as well
as its text: a real SQLite store built by the real ingest pipeline and tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

import ingest
from ingest.search import meta_ranking, search

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


@pytest.fixture
def store(tmp_path, tokenizer):
    root = tmp_path / "journal"
    write(root, FILES)
    with ingest.open_store(tmp_path / "home", tokenizer) as opened:
        ingest.add_source(opened, root)
        ingest.run(opened, embed=False)
        opened.root = root
        yield opened


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
