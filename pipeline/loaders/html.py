"""HTML loader: the main text of the page, without navigation, scripts or boilerplate."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from pipeline.errors import IngestError
from pipeline.loaders.common import content_hash, doc_id_for
from pipeline.loaders.text import decode_text
from pipeline.types import Document

SKIP = {
    "script", "style", "noscript", "template", "svg", "nav", "header", "footer", "aside", "form",
    "button", "select", "iframe", "head", "object", "canvas", "menu", "dialog",
}  # fmt: skip
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
PARAGRAPH = {
    "p", "div", "section", "article", "main", "blockquote", "pre", "table", "ul", "ol", "dl",
    "figure", "figcaption", "address", "details", "summary", "h1", "h2", "h3", "h4", "h5", "h6",
}  # fmt: skip
LINE = {"br", "li", "tr", "dt", "dd", "caption"}
BOILERPLATE = re.compile(r"\b(nav|navbar|menu|footer|sidebar|breadcrumbs?|cookie|banner|skip-link)\b", re.I)
BOILERPLATE_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu"}


class _Extractor(HTMLParser):
    def __init__(self, only_main: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.only_main = only_main
        self.stack: list[tuple[str, bool]] = []  # (tag, skipped)
        self.skip_depth = 0
        self.main_depth = 0
        self.pre_depth = 0
        self.out: list[str] = []
        self.title: list[str] = []
        self.in_title = False
        self.heading: int | None = None

    def _boilerplate(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag in SKIP:
            return True
        a = {k: (v or "") for k, v in attrs}
        if a.get("role", "").lower() in BOILERPLATE_ROLES or "hidden" in a or a.get("aria-hidden") == "true":
            return True
        return bool(BOILERPLATE.search(f"{a.get('class', '')} {a.get('id', '')}"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if tag in VOID:
            if tag in LINE and self._keeping():
                self.out.append("\n")
            return
        skipped = self.skip_depth > 0 or self._boilerplate(tag, attrs)
        self.stack.append((tag, skipped))
        if skipped:
            self.skip_depth += 1
            return
        if tag in ("main", "article"):
            self.main_depth += 1
        if tag == "pre":
            self.pre_depth += 1
        if self._keeping():
            if tag in PARAGRAPH:
                self.out.append("\n\n")
            elif tag in LINE:
                self.out.append("\n")
            if re.fullmatch(r"h[1-6]", tag):
                self.out.append("#" * int(tag[1]) + " ")
            elif tag == "li":
                self.out.append("- ")
            elif tag in ("td", "th"):
                self.out.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in VOID:
            return
        # Close up to the matching open tag (tolerates unclosed children).
        for k in range(len(self.stack) - 1, -1, -1):
            if self.stack[k][0] == tag:
                for t, skipped in reversed(self.stack[k:]):
                    if skipped:
                        self.skip_depth -= 1
                        continue
                    if t in ("main", "article"):
                        self.main_depth -= 1
                    if t == "pre":
                        self.pre_depth -= 1
                    if t in PARAGRAPH and self._keeping(inside_main=True):
                        self.out.append("\n\n")
                del self.stack[k:]
                break

    def _keeping(self, inside_main: bool = False) -> bool:
        if self.skip_depth:
            return False
        return not self.only_main or self.main_depth > 0 or inside_main

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
            return
        if not self._keeping():
            return
        self.out.append(data if self.pre_depth else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> tuple[str, str]:
    """(title, main text) of an HTML page."""
    only_main = bool(re.search(r"<(main|article)[\s>]", html, re.I))
    ex = _Extractor(only_main)
    ex.feed(html)
    ex.close()
    raw = "".join(ex.out)
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in raw.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return " ".join("".join(ex.title).split()), text


def _decode_html(path: Path, data: bytes, notes: list[str]) -> str:
    try:
        return decode_text(path, data, notes)
    except IngestError:
        m = re.search(rb"charset=[\"']?([\w-]+)", data[:4096], re.I)
        if m:
            try:
                return data.decode(m.group(1).decode())
            except (LookupError, UnicodeDecodeError):
                pass
        raise


def load_html(path: Path, data: bytes) -> Document:
    notes: list[str] = []
    html = _decode_html(path, data, notes)
    if "<" not in html:
        raise IngestError(str(path), "no HTML markup found", "rename it to .txt if it is plain text")
    title, text = html_to_text(html)
    if not text.strip():
        raise IngestError(
            str(path), "the page has no main text", "check that it is not only scripts or images"
        )
    digest = content_hash(data)
    return Document(
        doc_id=doc_id_for(digest),
        source_path=str(path),
        media_type="html",
        text=text,
        content_hash=digest,
        title=title or path.stem,
        warnings=tuple(notes),
    )
