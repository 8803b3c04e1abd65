"""How an attempt's failure is written down: a message every job owner may read, and a
detail (the innermost frames, where it ran) kept for admins. Whatever a handler raises, the
text is safe for Postgres (no NUL, no lone surrogate, bounded), and describing it can never
raise in turn."""

from __future__ import annotations

import traceback

LAST_ERROR_MAX_CHARS = 2000
"""jobs.last_error: the exception's type and message, cut to this length."""
ERROR_DETAIL_MAX_CHARS = 8000
"""jobs.error_detail: the innermost frames of the traceback, cut to this length."""
FRAMES_KEPT = 5


def safe_text(text: str, limit: int) -> str:
    """``text`` as a Postgres text column will take it: NUL shown as ``\\x00`` and lone
    surrogates as ``\\udXXX`` escapes (both visible, neither storable), at most ``limit``
    characters."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(exc: BaseException) -> tuple[str, str]:
    """(message, detail) of an exception: ``"TypeName: message"`` for the job's owner, the
    innermost frames for admins. An exception whose ``__str__`` raises is named by type."""
    name = _type_name(exc)
    try:
        text = str(exc)
    except BaseException:  # a hostile __str__ must not hide the failure
        text = "<the exception could not be printed>"
    message = f"{name}: {text}" if text else name
    try:
        frames = "".join(traceback.format_tb(exc.__traceback__)[-FRAMES_KEPT:])
    except BaseException:
        frames = ""
    return safe_text(message, LAST_ERROR_MAX_CHARS), safe_text(frames, ERROR_DETAIL_MAX_CHARS)


def _type_name(exc: BaseException) -> str:
    try:
        return str(type(exc).__qualname__)
    except BaseException:
        return "Exception"
