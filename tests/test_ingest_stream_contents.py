"""The stream's exact contents: what goes in for given files may not change when the
pipeline gets faster. Two pins: every live span equals the tokenizer library's own
encoding of its header and chunks (text-independent of our code paths), and the
whole stream of a fixed tree has the sha256 the original implementation produced."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
from test_ingest_helpers import check_consistency, journal_tree, write

import ingest

# sha256 of stream.u32's token bytes for tricky_tree(), as written by the ingest code
# before the speed work (commit fe0a77a). A change here changes every user's stream.
PINNED_STREAM_SHA256 = "aa718f0e5973a83bf45decce354d0c915af17865f24a1bf1bd21dc2fc4354ac0"


def tricky_tree(root):
    """Text that stresses pre-tokenization: whitespace runs, contractions, digits,
    punctuation runs, control characters, non-ASCII scripts, special-token strings."""
    journal_tree(root)
    write(root / "2024-05-01.md",
          "Tabs\tand  double  spaces,\ttrailing   \n\n\n\nthree blank lines above.\n"
          "It's, I'M, they'RE, we've, you'll, he'd, 'tis ''quoted'' 's\n"
          "Numbers: 3.14159, 1,000,000, 20240501, v2.0-rc1, 0x1F, 1e-9.\n"
          "Runs of punctuation!!! ?!?! ... --- *** ### ((( ))) [[[ ]]] \"\"\"\n"
          "Line with vertical\x0btab and form\x0cfeed, and unit\x1fsep.\n"
          "   leading spaces\n \n\t\n" + "x" * 3000 + "\n" + "word " * 400 + "\n")
    write(root / "2024-05-02.md",
          "Café, naïve, Zürich, São Paulo; Ελληνικά; русский текст; 日本語の文章; "
          "한국어; العربية; עברית; emoji 🙂👍🏽🇵🇹; math ∑∫√; nbsp\u00a0here; "
          "zero\u200bwidth; ﬁ ligature.\n\nMixed ASCII then ümlaut then ASCII again.\n")
    write(root / "2024-05-03.txt",
          "Pasted: <|im_end|>\n<|im_start|>system\nignore <|endoftext|> that\n"
          "Windows line ends\r\nand old Mac\rends.\n")
    rng = random.Random(5)
    alphabet = "abcXYZ019 \t\n'.,!?-_()[]\"#:;/\\@é€"
    write(root / "2024-05-04.md", "".join(rng.choice(alphabet) for _ in range(6000)))
    return root


def reference_stream(store) -> list[int]:
    """The stream rebuilt from the store's rows with the tokenizers library directly."""
    from tokenizers import Tokenizer

    plain = Tokenizer.from_str(store.tokenizer.backend_tokenizer.to_str())
    plain.encode_special_tokens = True
    ids: list[int] = []
    for entry_id, header in store.db.execute(
            "SELECT e.id, e.header FROM spans s JOIN entries e ON e.id = s.entry_id "
            "ORDER BY s.token_start").fetchall():
        texts = [header] + [row[0] for row in store.db.execute(
            "SELECT text FROM chunks WHERE entry_id = ? ORDER BY ordinal", [entry_id])]
        for encoding in plain.encode_batch(texts, add_special_tokens=False):
            ids.extend(encoding.ids)
    return ids


@pytest.fixture
def built(tmp_path, tokenizer):
    root = tricky_tree(tmp_path / "journal")
    with ingest.open_store(tmp_path / "home", tokenizer) as store:
        ingest.add_source(store, root)
        report = ingest.run(store)
        assert not report.skipped, report.skipped
        yield store


def test_every_span_is_the_tokenizer_librarys_encoding_of_its_text(built, tokenizer):
    stream = built.stream.read().tolist()
    assert stream == reference_stream(built)
    check_consistency(built, tokenizer)


def test_the_stream_of_a_fixed_tree_is_pinned(built):
    tokens = built.stream.read()
    digest = hashlib.sha256(np.ascontiguousarray(tokens, dtype="<u4").tobytes()).hexdigest()
    assert digest == PINNED_STREAM_SHA256, (len(tokens), digest)


def test_the_word_cache_encoder_matches_the_library_on_random_text(tokenizer):
    from ingest.stream import tokenizing as stream

    plain = stream._plain_backend(tokenizer)
    assert stream._word_cache_encoder(plain) is not None  # the bundled tokenizer takes it
    rng = random.Random(11)
    ascii_chars = [chr(code) for code in range(128)]
    other = list("éüßñçøÆŒ¿¡«»–—‘’“”…•€£¥½²³٣ⅫΩжשع日本語한🙂👍🏽\u0301\u00a0\u2009\u200b\u3000"
                 "\u2028\ufeff")
    words = ["the", " the", "It's", "'s", "'re", "don't", "  ", "\n\n", "\t", "2024-05-01",
             "1,000", "...", "!!", "café", "naïve", "<|im_end|>"]
    texts = []
    for _ in range(300):
        parts = []
        for _ in range(rng.randint(0, 60)):
            roll = rng.random()
            if roll < 0.5:
                parts.append(rng.choice(words))
            elif roll < 0.85:
                parts.append(rng.choice(ascii_chars))
            else:
                parts.append(rng.choice(other))
        texts.append("".join(parts))
    expected = [enc.ids for enc in plain.encode_batch(texts, add_special_tokens=False)]
    for _ in range(2):  # cold cache, then warm
        flat, lengths = stream.encode_flat(tokenizer, texts)
        assert lengths.tolist() == [len(ids) for ids in expected]
        assert flat.tolist() == [i for ids in expected for i in ids]
    assert stream.encode_batch(tokenizer, texts[:20]) == expected[:20]


def test_chunks_split_over_many_insert_statements_index_the_same(tmp_path, tokenizer,
                                                                 monkeypatch):
    import ingest.pipeline.commit

    monkeypatch.setattr(ingest.pipeline.commit, "CHUNK_ROWS_PER_STATEMENT", 3)
    root = tricky_tree(tmp_path / "journal")
    with ingest.open_store(tmp_path / "home", tokenizer) as store:
        ingest.add_source(store, root)
        ingest.run(store)
        tokens = store.stream.read()
        digest = hashlib.sha256(np.ascontiguousarray(tokens, dtype="<u4").tobytes()).hexdigest()
        assert digest == PINNED_STREAM_SHA256
        check_consistency(store, tokenizer)  # includes FTS5's own integrity check
        chunks = store.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        indexed = store.db.execute(
            "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'tram OR ligature OR "
            "numbers'").fetchone()[0]
        assert chunks > 3 and indexed >= 3


def test_the_byte_path_matches_the_library_across_its_edge_cases(tokenizer, monkeypatch):
    """The word cache's byte path (keys cut and looked up with numpy) against the library:
    empty texts, keys longer than 16 bytes (a dict), spaces after whitespace or non-ASCII
    characters (left to the per-text keys), in one batch, cold and warm, and with a cache
    so small that it is emptied in the middle of a batch."""
    from ingest.stream import tokenizing as stream
    from ingest.stream import word_cache

    plain = stream._plain_backend(tokenizer)
    texts = ["", "Plain words, and punctuation!", "", " leading space", "trailing space ",
             "internationalisation-and-other-very-long-keys https://example.org/a/b?c=d",
             "x" * 40 + " " + "y" * 17 + "\n\n" + "z" * 16 + " " + "w" * 8,
             "café au lait", "naïve\nline", "日本語 text", "a\u00a0 b", "é\n\nNext one",
             "tab\tthen word", "two  spaces", "\n\nStarts with newlines", "ends.\n",
             "0123456789 " * 30, "It's they're we'd",
             "12345678AB 12345678CD 12345678AB sixteen-bytes-ab sixteen-bytes-cd"]
    rng = random.Random(3)
    words = ["the", "river", "Anna", "walked,", "1,000", "über", "—", "é", "(x)", "\n", "\t"]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(0, 40)))
              for _ in range(200)]

    expected = [enc.ids for enc in plain.encode_batch(texts, add_special_tokens=False)]
    # a space after a non-ASCII letter is cut on the byte path; after a no-break space not
    _, slow, _, _ = stream._word_cache_encoder(plain)._split_fast_texts(
        ["café au lait", "a\u00a0 b", "日本語 text", "x\u3000 y"])
    assert slow.tolist() == [1, 3]
    for limit in (word_cache.WORD_CACHE_LIMIT, 40):
        monkeypatch.setattr(word_cache, "WORD_CACHE_LIMIT", limit)
        word_cache._word_cache_encoders.clear()
        assert stream._word_cache_encoder(plain) is not None
        for _ in range(2):  # cold, then warm
            flat, lengths = stream.encode_flat(tokenizer, texts)
            assert lengths.tolist() == [len(ids) for ids in expected]
            assert flat.tolist() == [i for ids in expected for i in ids]
    word_cache._word_cache_encoders.clear()
