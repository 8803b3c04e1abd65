"""How a failure is written down: readable, storable, and never a second failure."""

from __future__ import annotations

from queue_core.worker.error_text import LAST_ERROR_MAX_CHARS, describe, safe_text


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_message_is_type_and_text_and_detail_holds_the_frames() -> None:
    message, detail = describe(raised(ValueError("bad value")))
    assert message == "ValueError: bad value"
    assert "test_error_text.py" in detail and "raise exc" in detail


def test_an_exception_that_cannot_be_printed_is_named_by_its_type() -> None:
    message, _ = describe(raised(Unprintable()))
    assert message == "Unprintable: <the exception could not be printed>"


def test_an_exception_without_text_is_its_type_name() -> None:
    assert describe(raised(KeyboardInterrupt()))[0] == "KeyboardInterrupt"


def test_nul_and_lone_surrogates_become_visible_escapes_postgres_can_store() -> None:
    text = safe_text("a\x00b \ud800 c", 100)
    assert text == "a\\x00b \\ud800 c"
    text.encode("utf-8")  # storable


def test_long_text_is_cut_to_the_limit() -> None:
    message, _ = describe(raised(RuntimeError("x" * 10_000)))
    assert len(message) == LAST_ERROR_MAX_CHARS and message.endswith("…")
