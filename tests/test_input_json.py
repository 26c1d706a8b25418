"""Reading JSON given by users: command options and files, admin form fields."""

import json

import pytest
from django.core.management import CommandError
from django.db import DataError

from django_triggers.management.base import (
    InvalidJSON,
    describe_refusal,
    load_json,
    read_json_file,
)


def test_text_nested_deeper_than_the_parser_follows_is_refused_with_its_depth():
    with pytest.raises(InvalidJSON) as raised:
        load_json("[" * 5000, "--kwargs")

    assert str(raised.value) == (
        "--kwargs is nested deeper than can be read: 5000 levels of arrays and objects"
    )


def test_the_depth_reported_ignores_brackets_inside_strings():
    text = '{"a": ' * 3000 + '"[[[{{{"' + "}" * 3000

    with pytest.raises(InvalidJSON, match="3000 levels"):
        load_json(text, "--kwargs")


def test_a_key_named_twice_at_the_top_level_is_refused_naming_it():
    with pytest.raises(InvalidJSON) as raised:
        load_json('{"t_a": {}, "t_b": {}, "t_a": {}}', "configuration file 'c.json'")

    assert str(raised.value) == (
        "configuration file 'c.json' names the key 't_a' twice in the top-level object; "
        "keys must be unique"
    )


def test_a_key_named_twice_in_a_nested_object_is_refused_naming_where():
    with pytest.raises(InvalidJSON, match=r"the key 'k' twice in the object at a\[1\]\.x;"):
        load_json('{"a": [{}, {"x": {"k": 1, "k": 2}}]}', "--kwargs")


def test_the_first_object_naming_a_key_twice_is_the_one_reported():
    text = '{"first": {"p": 1, "p": 2}, "second": {"q": 1, "q": 2}}'

    with pytest.raises(InvalidJSON, match="the key 'p' twice in the object at first;"):
        load_json(text, "--kwargs")


def test_a_key_named_twice_in_an_object_nested_deep_is_found_without_recursion():
    text = "[" * 900 + '{"k": 1, "k": 2}' + "]" * 900

    with pytest.raises(InvalidJSON) as raised:
        load_json(text, "--kwargs")

    assert "names the key 'k' twice in the object at ...[0][0]" in str(raised.value)
    assert len(str(raised.value)) < 300


def test_a_long_key_named_twice_is_shortened_in_the_message():
    key = "k" * 10_000

    with pytest.raises(InvalidJSON) as raised:
        load_json(json.dumps({"a": 1}).replace("}", f', "{key}": 1, "{key}": 2}}'), "--kwargs")

    assert len(str(raised.value)) < 300


def test_the_same_key_in_different_objects_is_accepted():
    assert load_json('{"a": {"x": 1}, "b": {"x": 2}}', "--kwargs") == {
        "a": {"x": 1},
        "b": {"x": 2},
    }


def test_invalid_json_names_what_was_given_and_where_it_breaks():
    with pytest.raises(InvalidJSON, match=r"^--result is not valid JSON: .*line 1 column 2"):
        load_json("{oops", "--result")


def test_a_file_starting_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "configuration.json"
    path.write_text('{"t_a": {}}', encoding="utf-8-sig")

    assert read_json_file(str(path), "configuration file") == {"t_a": {}}


def test_a_file_naming_a_key_twice_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "configuration.json"
    path.write_text('{"t_a": {}, "t_a": {}}', encoding="utf-8")

    with pytest.raises(CommandError, match=f"configuration file '{path}' names the key 't_a'"):
        read_json_file(str(path), "configuration file")


def test_a_refusal_by_the_database_is_described_as_such():
    message = describe_refusal(DataError("value too long for type character varying(255)"))

    assert message == (
        "the database refused a value: value too long for type character varying(255)"
    )
