"""The limits of a stored JSON value, checked on Python values and on raw request text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from queue_core.json_values import (
    JSON_MAX_DEPTH,
    JSON_MAX_NUMBER_CHARS,
    JsonValueError,
    encode_json,
    scan_json_text,
)


def nested(depth: int) -> dict[str, Any]:
    """An object nested ``depth`` levels deep (the outer object is level 1)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_values_within_every_limit_encode_compactly() -> None:
    value = {"s": "héllo 😀", "n": 10 ** (JSON_MAX_NUMBER_CHARS - 2), "l": [1.5, None, True]}
    assert json.loads(encode_json(value, "input")) == value
    assert json.loads(encode_json(nested(JSON_MAX_DEPTH), "input")) == nested(JSON_MAX_DEPTH)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"s": "a\x00b"}, "NUL"),
        ({"a\x00": 1}, "NUL"),
        ({"s": "\ud800"}, "lone UTF-16 surrogate"),
        ({"s": "x\udc00y"}, "lone UTF-16 surrogate"),
        ({"s": ["\udbff"]}, "lone UTF-16 surrogate"),
        (nested(JSON_MAX_DEPTH + 1), "nested deeper"),
        ({"l": [[[[]]]] * 2, "deep": nested(JSON_MAX_DEPTH)}, "nested deeper"),
        ({"n": 10**JSON_MAX_NUMBER_CHARS}, "number longer"),
        ({"n": -(10**5000)}, "number longer"),
        ({"f": float("nan")}, "not JSON-serialisable"),
        ({"o": object()}, "not JSON-serialisable"),
    ],
)
def test_values_breaking_a_limit_are_refused_with_the_reason(value: Any, reason: str) -> None:
    with pytest.raises(JsonValueError, match=reason):
        encode_json(value, "output")


@pytest.mark.parametrize(
    ("number", "fits"),
    [
        (10**JSON_MAX_NUMBER_CHARS - 1, True),  # 100 digits
        (10**JSON_MAX_NUMBER_CHARS, False),  # 101
        (-(10 ** (JSON_MAX_NUMBER_CHARS - 1)) + 1, True),  # a sign and 99 digits
        (-(10 ** (JSON_MAX_NUMBER_CHARS - 1)), False),  # a sign and 100 digits
    ],
)
def test_the_value_check_and_the_text_scan_agree_on_number_length(number: int, fits: bool) -> None:
    text = json.dumps({"n": number}).encode()
    assert (scan_json_text(text) is None) is fits
    if fits:
        encode_json({"n": number}, "input")
    else:
        with pytest.raises(JsonValueError):
            encode_json({"n": number}, "input")


def test_a_text_within_the_limits_passes_the_scan() -> None:
    text = json.dumps({"job_type": "x", "input": nested(JSON_MAX_DEPTH - 1), "n": 12345})
    assert scan_json_text(text.encode()) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * (JSON_MAX_DEPTH + 1) + b"]" * (JSON_MAX_DEPTH + 1), "nested deeper"),
        (b'{"n": ' + b"9" * (JSON_MAX_NUMBER_CHARS + 1) + b"}", "number is longer"),
        (b'{"n": 1' + b"0" * 5000 + b"}", "number is longer"),
    ],
)
def test_the_scan_refuses_deep_or_long_numbers(raw: bytes, reason: str) -> None:
    assert reason in (scan_json_text(raw) or "")


def test_the_scan_ignores_brackets_and_digits_inside_strings() -> None:
    inside = '"' + "[{" * 100 + "9" * 500 + '\\"[[' + '"'
    assert scan_json_text(('{"s": ' + inside + "}").encode()) is None


def test_the_scan_counts_the_envelope_it_is_told_about() -> None:
    body = json.dumps({"jobs": [{"input": nested(JSON_MAX_DEPTH)}]}).encode()
    assert scan_json_text(body) is not None
    assert scan_json_text(body, max_depth=JSON_MAX_DEPTH + 3) is None
