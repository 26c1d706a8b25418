"""``django_triggers.text.printable``: stored text shown safely to operators."""

import pytest

from django_triggers.text import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("bell\x07", "bell\\x07"),
        ("line\nbreak\ttab\rreturn", "line\\x0abreak\\x09tab\\x0dreturn"),
        ("nul\x00", "nul\\x00"),
        ("delete\x7f", "delete\\x7f"),
        ("c1\x9b31m", "c1\\x9b31m"),
    ],
    ids=["escape", "bell", "line-breaks-and-tabs", "nul", "delete", "c1-control"],
)
def test_control_characters_are_spelled_out_as_two_hex_digits(text, shown):
    assert printable(text) == shown


def test_unicode_line_and_paragraph_separators_are_spelled_out():
    assert printable("a\u2028b\u2029c") == "a\\u2028b\\u2029c"


def test_private_use_and_unassigned_characters_are_spelled_out():
    assert printable("\ue000\U0010ffff") == "\\ue000\\U0010ffff"


def test_a_lone_surrogate_is_spelled_out():
    assert printable("x\ud800") == "x\\ud800"


def test_ordinary_text_backslashes_and_non_ascii_letters_are_kept():
    text = "pageReceived t_import#0 C:\\temp caf\u00e9 \u65e5\u672c \U0001f600"

    assert printable(text) == text


def test_spelling_out_twice_changes_nothing_more():
    once = printable("a\x1b[2J\u2028")

    assert printable(once) == once
