"""Perceptual signs: parsing, payload parsing, deterministic ids."""

from __future__ import annotations

from normcode_core.engine.signs import (
    FALSE_SIGN,
    TRUE_SIGN,
    SignIds,
    parse_sign,
    sign_id,
    sign_payload,
    strip_sign,
    wrap,
)


def test_parse_typed_named_and_plain_signs() -> None:
    assert parse_sign("%{file_location}price(provisions/data/p.json)") == ("file_location", "price", "provisions/data/p.json")
    assert parse_sign("%17e(224)") == (None, "17e", "224")
    assert parse_sign("%(multi\nline)") == (None, "", "multi\nline")
    assert parse_sign("plain") is None and parse_sign(42) is None
    # Norms have no spaces: truth values are markers, not parseable signs (as upstream).
    assert parse_sign(TRUE_SIGN) is None and strip_sign(FALSE_SIGN) == FALSE_SIGN


def test_strip_parses_literals_then_json_then_keeps_text() -> None:
    assert strip_sign("%abc({'a': 1, 'b': [True, None]})") == {"a": 1, "b": [True, None]}
    assert strip_sign('%abc({"a": true})') == {"a": True}
    assert strip_sign("%abc(hello world)") == "hello world"
    assert sign_payload("%abc([1, 2])") == "[1, 2]"


def test_wrap_uses_str_of_the_value() -> None:
    assert wrap({"k": None}, "0a1") == "%0a1({'k': None})"
    assert wrap("x", "0a1", "file_location") == "%{file_location}0a1(x)"


def test_ids_are_deterministic_three_hex_digits() -> None:
    first, second = SignIds("run/1.2#1"), SignIds("run/1.2#1")
    assert [first.next() for _ in range(3)] == [second.next() for _ in range(3)]
    assert first.at(0, 1) == second.at(0, 1) != first.at(1, 0)
    value = sign_id("seed", "x")
    assert len(value) == 3 and all(c in "0123456789abcdef" for c in value)
