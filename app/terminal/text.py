"""Printing untrusted strings (paths, document text, questions, model output) to a terminal.

Rich parses console markup in every ``str`` it prints: a path with ``[/]`` crashes the
print (MarkupError), ``[link=http://...]`` in an answer becomes a hidden hyperlink. Build
lines with :func:`line` (rich ``Text``, never parsed as markup), and pass names through
:func:`shown_name` and longer text through :func:`shown_text`, which make control
characters visible so a file name with a newline or an escape sequence cannot forge a line
or restyle the terminal.
"""

from __future__ import annotations

import re

from rich.text import Text

# C0 and C1 controls, DEL, and the Unicode marks that reorder or break lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown_name(name: object) -> str:
    """A path or name on one line: every control character written as an escape (``\\n``)."""
    return _CONTROL.sub(lambda m: _visible(m.group()), str(name))


def shown_text(text: str) -> str:
    """Multi-line text (answers, quotes): newlines and tabs kept, other controls escaped."""
    return _CONTROL.sub(lambda m: m.group() if m.group() in "\n\t" else _visible(m.group()), text)


def line(*parts: str | tuple[str, str]) -> Text:
    """A line from plain pieces and (text, style) pairs; nothing in it is read as markup."""
    return Text.assemble(*parts)
