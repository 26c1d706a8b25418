"""Showing stored names and messages safely.

Session uids, trigger and task names, kwargs and exception messages come
from application code and payloads. Printed as they are, an escape character
among them could rewrite an operator's terminal, and some characters make a
file format invalid; :func:`printable` spells them out instead.
"""

from __future__ import annotations

import unicodedata

#: Unicode categories spelled out: control, surrogate, private use, unassigned.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn"})
#: Line and paragraph separators, which some viewers take for line breaks.
_LINE_SEPARATORS = frozenset("\u2028\u2029")


def printable(text: str) -> str:
    """``text`` with control and other invisible characters spelled out (``\\x1b``).

    Each such character becomes ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``,
    as in Python, so the operator sees that a name holds one, and every
    output format stays valid (XML 1.0 forbids most control characters, even
    escaped). Other characters, backslashes included, are kept as they are.
    """
    return "".join(_spelled_out(char) for char in text)


def _spelled_out(char: str) -> str:
    if unicodedata.category(char) not in _INVISIBLE_CATEGORIES and char not in _LINE_SEPARATORS:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
