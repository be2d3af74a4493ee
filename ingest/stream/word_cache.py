"""The word cache: a fast encoder for byte-level BPE tokenizers that splits text into
words itself and looks each word's ids up in a cache filled by the library (with a
numpy "byte path" for whole batches). ``_word_cache_encoder`` gives the encoder for a
tokenizer, or None where the tokenizer is built another way or the encoder disagrees
with the library on its self-check texts."""

from __future__ import annotations

import re
from itertools import accumulate, chain

import numpy as np

from ingest.stream.file import TOKEN_DTYPE

# A byte-level BPE tokenizer (GPT-2's scheme: ByteLevel pre-tokenizer with its regex,
# no normalizer) cuts text into words with one fixed pattern and runs BPE on each word
# alone, so a text's ids are the concatenation of its words' ids. Journals repeat the
# same few thousand words, so splitting in Python and looking each word up in a cache
# (filled by the library itself) is several times faster than re-running BPE on
# everything. The cache's keys are coarser than the pattern's words where that is safe
# and cheap: pieces cut with str.split at spaces (and before newlines) that follow a
# non-space character, where a word always starts (see ``keys``); other texts use
# the pattern's words. The pattern's character classes (letter, number, whitespace, other) are
# asked of the library, one probe per character; the encoder checks itself against the
# library on a probe text and is not used if they disagree or the tokenizer is built
# another way.
# (GPT-2's "'s|'t|'re|'ve|'m|'ll|'d| ?L+| ?N+| ?[^SLN]+|S+(?!\S)|S+" with the letter and number
# branches first: they cannot match where a contraction starts, so the order is the same
# in effect and most positions stop at the first branch.)
_WORD_PATTERN = (" ?[{L}]+| ?[{N}]+|'(?:s|t|re|ve|m|ll|d)| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])"
                 "|[{S}]+")
_REPRESENTATIVE = {"L": "a", "N": "0", "S": "\t", "O": "!"}  # ASCII stand-ins per class
_NON_ASCII_BEFORE_SPACE = re.compile(r"([^\x00-\x7f]) ")
WORD_CACHE_LIMIT = 150_000  # keys (~20 MB); the cache is emptied when it grows past this

BYTE_TABLE_BITS = 18  # slots of the byte path's table (at most 57 % full)
_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1],
                      dtype=np.uint64)  # masks keeping the first n bytes of 8

_word_cache_encoders: dict[int, tuple[object, object]] = {}


def _slot_hash(head: np.ndarray, tail: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Where a key's probe starts in the byte path's table (a mix of its identity)."""
    mixed = (head * np.uint64(0x9E3779B97F4A7C15)) ^ (tail * np.uint64(0xC2B2AE3D27D4EB4F)) \
        ^ lengths.astype(np.uint64)
    mixed ^= mixed >> np.uint64(31)
    mixed *= np.uint64(0xD6E8FEB86659FD93)
    return (mixed >> np.uint64(64 - BYTE_TABLE_BITS)).astype(np.int64)


def _distinct(head: np.ndarray, tail: np.ndarray, lengths: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(an index of each different key, each key's number among them) by identity."""
    order = np.lexsort((lengths, tail, head))
    head, tail, lengths = head[order], tail[order], lengths[order]
    starts_group = np.ones(len(order), dtype=bool)
    starts_group[1:] = ((head[1:] != head[:-1]) | (tail[1:] != tail[:-1])
                        | (lengths[1:] != lengths[:-1]))
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(starts_group) - 1
    return order[starts_group], inverse


def _word_cache_encoder(plain):
    cached = _word_cache_encoders.get(id(plain))
    if cached is None or cached[0] is not plain:
        encoder = _WordCacheEncoder.for_tokenizer(plain)
        cached = _word_cache_encoders[id(plain)] = (plain, encoder)
    return cached[1]


class _WordCacheEncoder:
    def __init__(self, plain):
        self.plain = plain
        self.pre_tokenizer = plain.pre_tokenizer
        self._reset()
        ascii_classes = {chr(code): self._ask_class(chr(code)) for code in range(128)}
        members = {name: "".join(re.escape(c) for c, k in ascii_classes.items() if k == name)
                   for name in "LNS"}
        self.translation: dict[int, str] = {}
        self.usable = (all(ascii_classes[rep] == name for name, rep in _REPRESENTATIVE.items())
                       and ascii_classes[" "] == "S")
        self.split_ascii = re.compile(_WORD_PATTERN.format(**members)).findall \
            if self.usable else None
        # A space after any whitespace character may belong to that whitespace's run.
        self.ascii_spaces = frozenset(c for c, k in ascii_classes.items() if k == "S")
        self.bad_pairs = [c + " " for c in sorted(self.ascii_spaces)]
        self.space_bytes = np.zeros(256, dtype=bool)  # the pattern's ASCII whitespace
        self.space_bytes[[ord(c) for c in self.ascii_spaces]] = True
        self.newline_cut_after = ~self.space_bytes  # a newline after one starts a key
        self.newline_cut_after[128:] = False

    @classmethod
    def for_tokenizer(cls, plain):
        """The encoder for ``plain`` if it is a byte-level BPE it agrees with, else None."""
        pre, model = plain.pre_tokenizer, plain.model
        try:
            added = plain.get_added_tokens_decoder().values()
            if (plain.normalizer is not None or type(pre).__name__ != "ByteLevel"
                    or not pre.use_regex or pre.add_prefix_space
                    or type(model).__name__ != "BPE" or model.dropout
                    or any(not token.special for token in added)
                    or not plain.encode_special_tokens):
                return None
        except AttributeError:  # another kind of tokenizer, or another library version
            return None
        encoder = cls(plain)
        if not encoder.usable or not encoder.agrees_with_library(_SELF_CHECK_TEXTS):
            return None
        return encoder

    def _ask_class(self, char: str) -> str:
        """Letter, number, whitespace or other, as the library's pre-tokenizer sees it."""
        pieces = len(self.pre_tokenizer.pre_tokenize_str(f"!{char}!"))
        if pieces == 1:
            return "O"
        if len(self.pre_tokenizer.pre_tokenize_str(f"a{char}")) == 1:
            return "L"
        if len(self.pre_tokenizer.pre_tokenize_str(f"1{char}")) == 1:
            return "N"
        return "S"

    def split(self, text: str) -> list[str] | None:
        """The pre-tokenizer's words of ``text`` (None: leave this text to the library)."""
        if text.isascii():
            return self.split_ascii(text)
        mapped = text.translate(self.translation)
        if not mapped.isascii():  # characters not seen before: ask the library once each
            for char in set(mapped):
                if ord(char) < 128:
                    continue
                try:
                    kind = self._ask_class(char)
                except UnicodeError:  # a lone surrogate: the library decides what happens
                    return None
                self.translation[ord(char)] = _REPRESENTATIVE[kind]
            mapped = text.translate(self.translation)
        ends = list(accumulate(map(len, self.split_ascii(mapped))))
        if not ends or ends[-1] != len(text):
            return None
        return list(map(text.__getitem__, map(slice, [0, *ends[:-1]], ends)))

    def keys(self, text: str) -> list:
        """Cache keys whose ids, one after another, are ``text``'s ids.

        Fast path: cut at every space that follows a non-space character. No pre-token
        of the pattern holds a space except as its first character, so such a space
        always starts a new pre-token, and the pieces between these cuts encode alone
        exactly as they do in place (each ends with a non-space, so no lookahead reaches
        past it). A piece after a cut is stored as the plain string and stands for
        ``" " + piece``; anything else is a 1-tuple holding the exact string. Texts with
        a space after whitespace (``"a  b"``, ``"\n  - item"``) take the pre-token split."""
        for pair in self.bad_pairs:  # (a loop: any() over a generator costs more here)
            if pair in text:
                return self._exact_keys(text)
        if not text.isascii() and self._space_after_other_whitespace(text):
            return self._exact_keys(text)
        if "\n" not in text:
            pieces = text.split(" ")
            pieces[0] = (pieces[0],)
            return pieces
        # Also cut before a newline that follows a non-space character (the same argument:
        # no pre-token runs from such a character into whitespace), so that
        # "end.\n\nNext" gives the keys "end." and "\n\nNext": far fewer distinct keys.
        keys: list = []
        lines = text.split("\n")
        segment = lines[0]
        for line in lines[1:]:
            if segment and segment[-1] < "\x80" and segment[-1] not in self.ascii_spaces:
                pieces = segment.split(" ")
                keys.append((pieces[0],))
                keys += pieces[1:]
                segment = "\n" + line
            else:
                segment += "\n" + line
        pieces = segment.split(" ")
        keys.append((pieces[0],))
        keys += pieces[1:]
        return keys

    def _exact_keys(self, text: str) -> list[tuple[str]]:
        words = self.split(text)
        return [(text,)] if words is None else [(word,) for word in words]

    def _space_after_other_whitespace(self, text: str) -> bool:
        """A space right after a non-ASCII character the pattern counts as whitespace
        (no-break space, ideographic space, …); True also when the library must decide."""
        for char in set(_NON_ASCII_BEFORE_SPACE.findall(text)):
            kind = self.translation.get(ord(char))
            if kind is None:
                try:
                    kind = self.translation[ord(char)] = _REPRESENTATIVE[self._ask_class(char)]
                except UnicodeError:  # a lone surrogate: leave the text to the slow path
                    return True
            if kind == _REPRESENTATIVE["S"]:
                return True
        return False

    def encode_flat(self, texts: list[str], unique: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
        if unique:
            return self._encode_keys(texts, unique=True)
        fast, slow, data, byte_lengths = self._split_fast_texts(texts)
        if not len(slow):
            return self._encode_bytes(data, byte_lengths)
        # Texts the byte path cannot cut: the per-text keys, then both merged in order.
        fast_ids, fast_lengths = self._encode_bytes(data, byte_lengths) if len(fast) else (
            np.zeros(0, dtype=TOKEN_DTYPE), np.zeros(0, dtype=np.int64))
        slow_ids, slow_lengths = self._encode_keys([texts[i] for i in slow.tolist()])
        lengths = np.zeros(len(texts), dtype=np.int64)
        lengths[fast] = fast_lengths
        lengths[slow] = slow_lengths
        from_slow = np.zeros(len(texts), dtype=bool)
        from_slow[slow] = True
        # Where each text's ids start in its group's array, then one gather.
        group_starts = np.zeros(len(texts), dtype=np.int64)
        group_starts[fast] = np.cumsum(fast_lengths) - fast_lengths
        group_starts[slow] = np.cumsum(slow_lengths) - slow_lengths + len(fast_ids)
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        source = np.repeat(group_starts - (ends - lengths), lengths) + np.arange(total)
        return np.concatenate([fast_ids, slow_ids])[source], lengths

    def _encode_keys(self, texts: list[str], unique: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Encode by per-text keys looked up in a dict (texts the byte path leaves)."""
        keys: list = []
        keys_per_text = np.zeros(len(texts), dtype=np.int64)
        for position, text in enumerate(texts):
            text_keys = self._exact_keys(text) if unique else self.keys(text)
            keys += text_keys
            keys_per_text[position] = len(text_keys)
        try:
            index = self._indices(keys)
        except KeyError:
            seen = set(keys)
            missing = [key for key in seen if key not in self.index]
            if self.cached_keys + len(missing) > WORD_CACHE_LIMIT:
                self._reset()
                missing = list(seen)
            self._learn(missing)
            index = self._indices(keys)
        return self._gather(index, keys_per_text)

    def _gather(self, index: np.ndarray, keys_per_text: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Each key's ids from the table, all keys at once; and the ids per text."""
        counts = self.counts[index]
        token_ends = np.cumsum(counts)
        total = int(token_ends[-1]) if len(token_ends) else 0
        source = np.repeat(self.starts[index] - (token_ends - counts), counts)
        flat = self.table[source + np.arange(total)]
        key_ends = np.cumsum(keys_per_text)
        token_bounds = np.concatenate([[0], token_ends])
        lengths = np.diff(token_bounds[np.concatenate([[0], key_ends])])
        return flat, lengths.astype(np.int64)

    # -- the byte path: the same keys, cut and looked up with numpy --------------------
    # ``keys`` costs a few Python objects per word; here the texts of a batch are one
    # UTF-8 byte array, cut with the same rule (a key starts at every space, and at a
    # newline after an ASCII non-space character; a space-cut key holds its space, so
    # its bytes are the exact text it encodes), and each key of up to 16 bytes is found
    # in an open-addressing table by its exact (first 8 bytes, last 8 bytes, length).
    # Longer keys use a dict. Texts with a space after a whitespace character, or that
    # are not valid UTF-8 (lone surrogates), go to ``keys``.
    def _split_fast_texts(self, texts: list[str]):
        """(indices of byte-path texts, of the others, their UTF-8 bytes, bytes per text)."""
        joined = "".join(texts)
        if joined.isascii():
            encoded = None
            data = joined.encode("ascii")
            byte_lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        else:
            encoded = []
            for text in texts:
                try:
                    encoded.append(text.encode("utf-8"))
                except UnicodeEncodeError:
                    encoded.append(None)
            byte_lengths = np.fromiter((len(e) if e is not None else 0 for e in encoded),
                                       dtype=np.int64, count=len(texts))
            data = b"".join(e for e in encoded if e is not None)
        slow = np.zeros(len(texts), dtype=bool)
        if encoded is not None:
            slow[[i for i, e in enumerate(encoded) if e is None]] = True
        codes = np.frombuffer(data, dtype=np.uint8)
        starts = np.cumsum(byte_lengths) - byte_lengths
        inner = np.ones(len(codes), dtype=bool)  # False where a text starts
        inner[starts[starts < len(codes)]] = False
        after = codes[:-1]
        spaces = (codes[1:] == 32) & inner[1:]
        bad = np.flatnonzero(spaces & self.space_bytes[after]) + 1
        after_other = np.flatnonzero(spaces & (after >= 128)) + 1
        if len(after_other):  # a space after a non-ASCII character: bad if that is whitespace
            bad = np.concatenate([bad, [at for at in after_other.tolist()
                                        if self._whitespace_ends_at(data, at)]]).astype(np.int64)
        # (a text's index: the last text starting at or before the byte; empty texts
        # share their start with the next one and hold no bytes)
        slow[np.searchsorted(starts, bad, side="right") - 1] = True
        if not slow.any():
            return np.arange(len(texts)), np.zeros(0, dtype=np.int64), data, byte_lengths
        fast = np.flatnonzero(~slow)
        data = codes[np.repeat(~slow, byte_lengths)].tobytes()
        return fast, np.flatnonzero(slow), data, byte_lengths[fast]

    def _whitespace_ends_at(self, data: bytes, end: int) -> bool:
        """Whether the character whose UTF-8 bytes end at ``end`` (non-ASCII) is one the
        pattern counts as whitespace (no-break space, ideographic space, ...)."""
        start = end - 1
        while start > end - 4 and start > 0 and (data[start] & 0xC0) == 0x80:
            start -= 1
        try:
            char = data[start:end].decode("utf-8")
        except UnicodeDecodeError:  # (not reached for valid UTF-8): leave it to the keys
            return True
        kind = self.translation.get(ord(char)) if len(char) == 1 else None
        if kind is None:
            if len(char) != 1:
                return True
            try:
                kind = self.translation[ord(char)] = _REPRESENTATIVE[self._ask_class(char)]
            except UnicodeError:
                return True
        return kind == _REPRESENTATIVE["S"]

    def _encode_bytes(self, data: bytes, byte_lengths: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        codes = np.frombuffer(data, dtype=np.uint8)
        size = len(codes)
        starts = np.cumsum(byte_lengths) - byte_lengths
        cut = codes == 32
        cut[starts[starts < size]] = True
        cut[1:] |= (codes[1:] == 10) & self.newline_cut_after[codes[:-1]]
        key_starts = np.flatnonzero(cut)
        key_ends = np.append(key_starts[1:], size)
        key_lengths = key_ends - key_starts
        keys_per_text = np.bincount(np.searchsorted(starts, key_starts, side="right") - 1,
                                    minlength=len(byte_lengths)) if len(key_starts) else \
            np.zeros(len(byte_lengths), dtype=np.int64)
        # 8 bytes read at any offset (the array padded so the last reads stay inside).
        padded = np.zeros(size + 16 - size % 8, dtype=np.uint8)
        padded[:size] = codes
        words = np.lib.stride_tricks.as_strided(padded.view("<u8"), shape=(size + 1,),
                                                strides=(1,))
        head = words[key_starts] & _LOW_BYTES[np.minimum(key_lengths, 8)]
        tail = np.where(key_lengths > 8, words[np.maximum(key_ends - 8, 0)], np.uint64(0))
        rows = self._find(head, tail, key_lengths)
        unknown = np.flatnonzero(rows < 0)
        if len(unknown):
            # Each different key once (short ones told apart by their identity).
            short = unknown[key_lengths[unknown] <= 16]
            first, inverse = _distinct(head[short], tail[short], key_lengths[short])
            distinct = np.concatenate([short[first], unknown[key_lengths[unknown] > 16]])
            pieces = list(map(data.__getitem__, map(slice, key_starts[distinct].tolist(),
                                                    key_ends[distinct].tolist())))
            found = self._rows_of_unknown(pieces, head[distinct], tail[distinct],
                                          key_lengths[distinct])
            if found is None:  # the cache was emptied: every row above is gone
                return self._encode_bytes(data, byte_lengths)
            found = np.array(found, dtype=np.int64)
            rows[short] = found[:len(first)][inverse]
            rows[unknown[key_lengths[unknown] > 16]] = found[len(first):]
        return self._gather(rows, keys_per_text)

    def _find(self, head: np.ndarray, tail: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Rows of keys of <= 16 bytes in the table (-1: not there or longer)."""
        rows = np.full(len(head), -1, dtype=np.int64)
        slots = _slot_hash(head, tail, lengths)
        pending = np.flatnonzero(lengths <= 16)
        while len(pending):
            slot = slots[pending]
            there = self.slot_lengths[slot]
            match = ((there == lengths[pending]) & (self.slot_heads[slot] == head[pending])
                     & (self.slot_tails[slot] == tail[pending]))
            rows[pending[match]] = self.slot_rows[slot[match]]
            going = ~match & (there != 0)  # occupied by another key: probe the next slot
            pending = pending[going]
            slots[pending] = (slot[going] + 1) & (len(self.slot_lengths) - 1)
        return rows

    def _rows_of_unknown(self, pieces: list[bytes], head: np.ndarray, tail: np.ndarray,
                         lengths: np.ndarray) -> list[int] | None:
        """Rows of keys not in the table (``pieces`` with their identities): longer ones
        from a dict, new ones learnt (None: the cache was full and has been emptied;
        encode the batch again)."""
        first_seen: dict[bytes, int] = {}
        for position, piece in enumerate(pieces):
            first_seen.setdefault(piece, position)
        new = [piece for piece in first_seen if piece not in self.long_rows]
        if self.cached_keys and self.cached_keys + len(new) > WORD_CACHE_LIMIT:
            self._reset()
            return None
        first = self._add_ids([piece.decode("utf-8") for piece in new]) if new else 0
        found = dict(zip(new, range(first, first + len(new))))
        short = []
        for piece, row in found.items():
            if len(piece) > 16:
                self.long_rows[piece] = row
            else:
                short.append(first_seen[piece])
        if short:
            at = np.array(short, dtype=np.int64)
            self._insert(head[at], tail[at], lengths[at],
                         np.array([found[pieces[i]] for i in short], dtype=np.int64))
        return [found[piece] if piece in found else self.long_rows[piece] for piece in pieces]

    def _insert(self, head: np.ndarray, tail: np.ndarray, lengths: np.ndarray,
                rows: np.ndarray) -> None:
        """Put new keys (all different, none in the table) into free slots."""
        mask = len(self.slot_lengths) - 1
        slots = _slot_hash(head, tail, lengths)
        pending = np.arange(len(head))
        while len(pending):
            slot = slots[pending]
            free = self.slot_lengths[slot] == 0
            taken, first = np.unique(slot[free], return_index=True)  # one key per slot
            placed = pending[free][first]
            self.slot_heads[taken], self.slot_tails[taken] = head[placed], tail[placed]
            self.slot_lengths[taken], self.slot_rows[taken] = lengths[placed], rows[placed]
            left = np.ones(len(head), dtype=bool)
            left[placed] = False
            pending = pending[left[pending]]
            slots[pending] = (slots[pending] + 1) & mask
        self.byte_keys += len(head)

    @property
    def cached_keys(self) -> int:
        return len(self.index) + self.byte_keys + len(self.long_rows)

    def _indices(self, keys: list) -> np.ndarray:
        return np.fromiter(map(self.index.__getitem__, keys), dtype=np.int64, count=len(keys))

    def _learn(self, keys: list) -> None:
        """Encode new keys with the library and add their ids to the table."""
        first = self._add_ids([key[0] if isinstance(key, tuple) else " " + key for key in keys])
        self.index.update(zip(keys, range(first, first + len(keys))))

    def _add_ids(self, texts: list[str]) -> int:
        """Encode ``texts`` with the library, append their ids; returns the first new row."""
        encoded = [enc.ids for enc in self.plain.encode_batch(texts, add_special_tokens=False)]
        counts = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        ids = np.fromiter(chain.from_iterable(encoded), dtype=TOKEN_DTYPE, count=int(counts.sum()))
        first = len(self.counts)
        self.counts = np.concatenate([self.counts, counts])
        self.starts = np.concatenate([self.starts, self.size + np.cumsum(counts) - counts])
        if self.size + len(ids) > len(self.table):
            grown = np.zeros(max(2 * len(self.table), self.size + len(ids)), dtype=TOKEN_DTYPE)
            grown[:self.size] = self.table[:self.size]
            self.table = grown
        self.table[self.size:self.size + len(ids)] = ids
        self.size += len(ids)
        return first

    def _reset(self) -> None:
        """Forget every cached word (word -> row of counts/starts -> ids in table)."""
        self.index: dict[str | tuple[str], int] = {}
        self.counts = np.zeros(0, dtype=np.int64)
        self.starts = np.zeros(0, dtype=np.int64)
        self.table = np.zeros(1 << 16, dtype=TOKEN_DTYPE)
        self.size = 0
        slots = 1 << BYTE_TABLE_BITS
        self.slot_heads = np.zeros(slots, dtype=np.uint64)
        self.slot_tails = np.zeros(slots, dtype=np.uint64)
        self.slot_lengths = np.zeros(slots, dtype=np.uint8)  # 0: empty
        self.slot_rows = np.zeros(slots, dtype=np.int32)
        self.byte_keys = 0
        self.long_rows: dict[bytes, int] = {}

    def agrees_with_library(self, texts: list[str]) -> bool:
        """Same words as the library's pre-tokenizer, and the same ids, for ``texts``."""
        for text in texts:
            pieces = self.pre_tokenizer.pre_tokenize_str(text)
            if self.split(text) != [text[start:end] for _, (start, end) in pieces]:
                return False
        expected = [enc.ids for enc in self.plain.encode_batch(texts, add_special_tokens=False)]
        flat, lengths = self.encode_flat(texts)
        self._reset()
        return (lengths.tolist() == [len(ids) for ids in expected]
                and flat.tolist() == list(chain.from_iterable(expected)))


def _self_check_texts() -> list[str]:
    """Every ASCII character (and one or two others of each class) next to every class,
    whitespace runs, contractions."""
    characters = [chr(code) for code in range(1, 128)] + list("é日²٣\u00a0\u2009—🙂\u0301")
    contexts = ["{c}", "a{c}b", " {c}", "{c}{c} x", "1{c}2", "\n{c}\t", "'{c}s", "x  {c}  y\n"]
    texts = ["".join(context.format(c=c) for c in characters) for context in contexts]
    texts += ["It's 'S they're we've I'm you'll he'd 'tis ''x'' ", "a  b   c\t\t d \n\n e \n",
              "  lead\ntrail  ", " ", "\n\n", "Café naïve ½ ² 日本語 🙂👍🏽 \u00a0nbsp\u2009thin ü",
              "x" * 500 + " " + "0123456789" * 20,
              # where a space does and does not start a pre-token (the fast path's cuts)
              " lead", "trail ", "a  b", "a \u00a0 b c", "x\u3000 y", "é ü ", "\u2009 x",
              "\n - item\n  - sub", "end.  Next", "end.\n\nNext x\ny\n\tz\t\nw\n \n",
              "a\n\n\nb\r\nc\x0c\nd!\n", "é\nü \u00a0\nx", "(paren) [x] 'q' \"d\" 1 2 ,", "  ", "é"]
    return texts


_SELF_CHECK_TEXTS = _self_check_texts()
