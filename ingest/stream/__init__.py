"""The token stream: the ``stream.u32`` file and how text becomes its tokens.

* ``file``: the file's layout and header, ``TokenStream`` (reading the committed part,
  the store's low-level writes), ``create_stream_file``;
* ``tokenizing``: ``tokenizer_identity``, ``encode_batch`` and ``encode_flat`` (text as
  plain text: special-token strings in a note stay text);
* ``word_cache``: the fast path those take for byte-level BPE tokenizers.

The names below are the ones used outside ingest (``ingest.stream.encode_batch``,
``ingest.stream.tokenizer_identity``, ...); modules inside ingest import from the
submodules.
"""

from ingest.stream.file import (
    HEADER_SIZE,
    TOKEN_BYTES,
    TOKEN_DTYPE,
    StreamError,
    TokenStream,
    create_stream_file,
    read_header,
)
from ingest.stream.tokenizing import encode_batch, encode_flat, tokenizer_identity

__all__ = [
    "HEADER_SIZE",
    "TOKEN_BYTES",
    "TOKEN_DTYPE",
    "StreamError",
    "TokenStream",
    "create_stream_file",
    "encode_batch",
    "encode_flat",
    "read_header",
    "tokenizer_identity",
]
