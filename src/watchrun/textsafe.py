"""Names from the file system and from log files, made safe to print on a terminal.

A directory, file or metric name may hold any character but `/` and NUL: an escape sequence in
one (OSC 52 writes the clipboard, CSI 2J clears the screen), a bidi override that reorders what
follows, a lone surrogate from undecodable bytes (which `print` cannot even encode). Every place
that prints a name passes it through `printable`, which writes such characters as visible
escapes and leaves everything else as it was.
"""

from __future__ import annotations

import re

# C0, DEL, C1, the bidi embeddings/overrides/isolates and marks, line/paragraph separators, and
# the surrogates os.fsdecode() makes of bytes that are not UTF-8
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    c = m.group(0)
    code = ord(c)
    if c in _NAMED:
        return _NAMED[c]
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the original byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` with every control, bidi-override and undecodable character as a visible escape
    (`\\x1b`, `\\u202e`, `\\xff`); unchanged when it holds none."""
    s = str(text)
    return s if _UNSAFE.search(s) is None else _UNSAFE.sub(_escape, s)
