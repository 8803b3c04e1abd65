"""What a JSON value stored in a job may be: one set of limits at every entry point (the API,
``create()``/``create_many()``, the CLI, a handler's output). Pure: no I/O.

The limits exist because Postgres, the drivers and the API's parser each fail differently on
the edge cases (a NUL in a string, a lone surrogate, a value nested a thousand deep, a
number of five thousand digits), and some of those failures surface only when the row is
read back. Refusing them up front gives one clear error instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

JSON_MAX_DEPTH = 64
"""Objects and arrays nested deeper than this are refused (the top-level object is depth 1)."""
JSON_MAX_NUMBER_CHARS = 100
"""A number written with more characters than this (sign, digits, exponent) is refused: far
beyond any 64-bit integer or double, well short of Python's 4,300-digit int parsing limit."""
_INT_BOUNDS = (-(10 ** (JSON_MAX_NUMBER_CHARS - 1)), 10**JSON_MAX_NUMBER_CHARS)
"""Integers strictly between these are written in at most JSON_MAX_NUMBER_CHARS characters
(a minus sign counts), as scan_json_text counts them."""

_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
"""One encoder for every value: json.dumps with options builds a new one per call."""
_LONE_SURROGATE = re.compile(
    r"\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}"
)
"""A UTF-16 surrogate escape without its pair: JSONB (and UTF-8) cannot hold it."""


class JsonValueError(ValueError):
    """The value breaks one of the limits above; the message says which and where."""


JSON_MAX_ITEMS = 1_000_000
"""Values (object members and array elements) in one stored value at most: each takes at
least a byte of JSON, so a value past this is too large anyway, and the check stops there
instead of walking a list of lists of a million elements."""


def encode_json(value: Any, what: str, max_items: int = JSON_MAX_ITEMS) -> str:
    """JSON text of ``value`` (compact, ASCII), after checking every limit. ``what`` names the
    value in errors ("input", "output"). Raises JsonValueError."""
    _check_structure(value, what, max_items)
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise JsonValueError(f"{what} is not JSON-serialisable: {exc}") from None
    if "\\u0000" in text:
        raise JsonValueError(f"{what} contains a NUL character (\\u0000): JSONB cannot store it")
    if "\\ud" in text and _LONE_SURROGATE.search(text):
        raise JsonValueError(f"{what} contains a lone UTF-16 surrogate: JSONB cannot store it")
    return text


def _check_structure(value: Any, what: str, max_items: int) -> None:
    """Depth, size, keys and number size, walking containers only (scalars cost nothing)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    items = 0
    while stack:
        item, depth = stack.pop()
        if depth > JSON_MAX_DEPTH:
            raise JsonValueError(f"{what} is nested deeper than {JSON_MAX_DEPTH} levels")
        items += len(item)
        if items > max_items:
            raise JsonValueError(f"{what} holds more than {max_items} values: too large")
        if isinstance(item, dict):
            if not all(type(key) is str for key in item):
                raise JsonValueError(
                    f"{what} has an object key that is not a string (JSON keys are strings; "
                    "1 and '1' would become the same key)"
                )
            children = item.values()
        else:
            children = item
        for child in children:
            if isinstance(child, dict | list | tuple):
                stack.append((child, depth + 1))
            elif isinstance(child, int) and not isinstance(child, bool):
                if not _INT_BOUNDS[0] < child < _INT_BOUNDS[1]:
                    raise JsonValueError(
                        f"{what} holds a number longer than {JSON_MAX_NUMBER_CHARS} characters"
                    )


def scan_json_text(raw: bytes, max_depth: int = JSON_MAX_DEPTH) -> str | None:
    """Why raw JSON text breaks the depth or number limit, or None: a linear scan that never
    parses, so a request body can be refused before a parser recurses or converts a
    5,000-digit number. ``max_depth`` counts the text's own envelope (a request body wraps a
    job's input in one or more objects). Strings are skipped (escapes included); malformed
    JSON is left for the parser to report."""
    if raw.count(b"{") + raw.count(b"[") <= max_depth and not _LONG_NUMBER.search(raw):
        return None  # the common case, at C speed: nothing here could break a limit
    depth = 0
    number = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
            continue
        if byte in _NUMBER_BYTES:
            number += 1
            if number > JSON_MAX_NUMBER_CHARS:
                return f"a number is longer than {JSON_MAX_NUMBER_CHARS} characters"
            continue
        number = 0
        if byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            if depth > max_depth:
                return f"the body is nested deeper than {max_depth} levels"
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
    return None


_NUMBER_BYTES = frozenset(b"0123456789+-.eE")
_LONG_NUMBER = re.compile(rb"[0-9+\-.eE]{%d,}" % (JSON_MAX_NUMBER_CHARS + 1))
