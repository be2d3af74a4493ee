"""HTML: visible text (no scripts or styles), the <title>, and a dated <meta>."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from ingest.dates import date_from_value
from ingest.readers.base import ReadResult, decode_text

FORMAT = "html"
EXTENSIONS = (".html", ".htm", ".xhtml")

_SKIP = {"script", "style", "noscript", "template", "svg", "head"}
_BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
          "article", "header", "footer", "blockquote", "pre", "ul", "ol", "table", "hr",
          "main", "aside", "nav", "dd", "dt", "figcaption"}
_DATE_META = {"date", "dc.date", "dcterms.created", "article:published_time", "created",
              "pubdate", "dc.date.created"}


class _TextExtractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self.meta_date: str | None = None
        self._skip_depth = 0
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "meta":
            values = {k.lower(): (v or "") for k, v in attrs}
            key = (values.get("name") or values.get("property") or "").lower()
            if key in _DATE_META and self.meta_date is None:
                self.meta_date = values.get("content")
            return
        if tag == "title":
            self._in_title = True
        if tag in _SKIP:
            self._skip_depth += 1
        elif tag in _BLOCK:
            self.parts.append("\n\n" if tag in ("p", "div", "section", "article") else "\n")
            if tag.startswith("h") and len(tag) == 2 and tag[1].isdigit():
                self.parts.append("#" * int(tag[1]) + " ")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag in _SKIP and self._skip_depth:
            self._skip_depth -= 1
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skip_depth:
            self.parts.append(data)


def read(data: bytes, relpath: str) -> ReadResult:
    text, encoding = decode_text(data)
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    body = "".join(parser.parts)
    body = re.sub(r"[ \t\r\f\v]+", " ", body)
    body = re.sub(r" ?\n ?", "\n", body)
    body = re.sub(r"\n{3,}", "\n\n", body).strip()
    result = ReadResult(text=body, encoding=encoding, heading_style="markdown")
    title = " ".join("".join(parser.title_parts).split())
    result.title = title[:300] or None
    if parser.meta_date:
        when = date_from_value(parser.meta_date)
        if when:
            result.date, result.date_rule = when, "front_matter"
    return result
