"""The watcher on a real folder: editors' saves, moves, deletes, vanishing folders, and the
periodic rescan that catches dropped events. Every wait is bounded."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from test_ingest_helpers import (
    check_consistency,
    disk_documents,
    journal_tree,
    live_documents,
    wait_until,
    write,
)

import ingest
from ingest import watcher as watcher_mod

TIMEOUT = 20.0

# watchdog re-registers a folder that was moved out and back; it says so loudly.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


@pytest.fixture
def watched(tmp_path, tokenizer):
    tree = journal_tree(tmp_path / "journal")
    home = tmp_path / "home"
    with ingest.open_store(home, tokenizer) as store:
        ingest.add_source(store, tree)
    passes = []
    watcher = ingest.Watcher(home, tokenizer, debounce=0.2, max_delay=2.0, rescan_every=3600,
                             on_pass=passes.append)
    watcher.start()
    assert watcher.ready.wait(TIMEOUT)
    reader = ingest.open_store(home)
    yield tree, reader, watcher, passes
    watcher.stop(timeout=TIMEOUT)
    assert not watcher._thread.is_alive()
    reader.close()


def in_sync(store, tree) -> bool:
    """The index equals the folders, and every entry has reached the stream."""
    pending = store.db.execute("SELECT count(*) FROM entries WHERE status = 'pending'"
                               ).fetchone()[0]
    return live_documents(store) == disk_documents(tree) and pending == 0


def settle(store, tree) -> None:
    assert wait_until(lambda: in_sync(store, tree), TIMEOUT), (live_documents(store),
                                                               disk_documents(tree))


def test_watcher_follows_saves_moves_deletes_and_vanishing_folders(watched, tmp_path, tokenizer):
    tree, store, _, passes = watched
    settle(store, tree)
    stream_after_first_build = len(store.stream)

    # An editor's atomic save: write a hidden temp file, then rename it over the note.
    temp = tree / ".2024-03-05.md.tmp1234"
    temp.write_text("Lisbon, rewritten by an editor that saves atomically.\n")
    os.replace(temp, tree / "2024-03-05.md")
    # vim: rename the note to a backup, write the new text, delete the backup.
    os.rename(tree / "2024-03-06.md", tree / "2024-03-06.md~")
    write(tree / "4913", "")
    os.remove(tree / "4913")
    write(tree / "2024-03-06.md", "Quiet day, edited in vim.\n")
    os.remove(tree / "2024-03-06.md~")
    # A burst of writes to one file ends as one revision.
    for i in range(5):
        write(tree / "burst.md", f"Draft {i} of a note written in a hurry.\n")
    settle(store, tree)
    revisions = dict(store.db.execute("SELECT path, revision FROM documents"))
    assert revisions["2024-03-05.md"] == 2 and revisions["2024-03-06.md"] == 2
    assert revisions["burst.md"] <= 2  # debounced: not one revision per write
    assert store.db.execute("SELECT count(*) FROM documents WHERE path LIKE '%~' OR path LIKE "
                            "'.%' OR path = '4913'").fetchone()[0] == 0

    # Moves in, out and within the tree, and a delete.
    outside = tmp_path / "outside"
    write(outside / "arrived.md", "A note that moved into the journal.\n")
    os.rename(outside / "arrived.md", tree / "arrived.md")
    os.rename(tree / "garden.org", outside / "garden.org")
    os.rename(tree / "page.html", tree / "notes" / "soup.html")
    os.remove(tree / "2024" / "01" / "15.txt")
    settle(store, tree)
    moved = store.db.execute("SELECT status FROM documents WHERE path = 'notes/soup.html'"
                             ).fetchone()
    assert moved == ("live",)

    # A folder vanishes and comes back: no new tokens for the same text.
    length = len(store.stream)
    shutil.move(tree / "notes", outside / "notes")
    settle(store, tree)
    shutil.move(outside / "notes", tree / "notes")
    settle(store, tree)
    assert len(store.stream) == length
    assert len(store.stream) > stream_after_first_build
    assert passes and all(p.stopped is False for p in passes)
    check_consistency(store, tokenizer)


def test_the_periodic_rescan_catches_dropped_events(tmp_path, tokenizer, monkeypatch):
    tree = journal_tree(tmp_path / "journal")
    home = tmp_path / "home"
    with ingest.open_store(home, tokenizer) as store:
        ingest.add_source(store, tree)
    # Lose every event: only the rescan can notice changes.
    monkeypatch.setattr(watcher_mod._Collector, "on_any_event", lambda self, event: None)
    watcher = ingest.Watcher(home, tokenizer, debounce=0.1, rescan_every=1.0)
    watcher.start()
    try:
        assert watcher.ready.wait(TIMEOUT)
        with ingest.open_store(home) as reader:
            settle(reader, tree)
            write(tree / "unseen.md", "Written while the events were lost.\n")
            os.remove(tree / "garden.org")
            settle(reader, tree)
    finally:
        watcher.stop(timeout=TIMEOUT)


def test_a_source_root_that_vanishes_is_left_alone_and_rewatched(tmp_path, tokenizer):
    tree = journal_tree(tmp_path / "journal")
    home = tmp_path / "home"
    with ingest.open_store(home, tokenizer) as store:
        ingest.add_source(store, tree)
    watcher = ingest.Watcher(home, tokenizer, debounce=0.1, rescan_every=3600)
    watcher.start()
    try:
        assert watcher.ready.wait(TIMEOUT)
        with ingest.open_store(home) as reader:
            settle(reader, tree)
            count = reader.status()["documents"]
            aside = tmp_path / "unmounted"
            shutil.move(tree, aside)  # like a drive being unmounted
            time.sleep(1.5)
            assert reader.status()["documents"] == count  # not taken for 7 deletions
            shutil.move(aside, tree)
            write(tree / "while-away.md", "Written after the folder came back.\n")
            settle(reader, tree)
            assert reader.status()["documents"] == count + 1
    finally:
        watcher.stop(timeout=TIMEOUT)
