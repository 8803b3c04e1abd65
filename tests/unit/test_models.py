"""Validation of new jobs and encoding of handler output (queue_core.models). Pure."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from queue_core.errors import InvalidJob, JobNotFound
from queue_core.models import (
    MAX_RETRIES_LIMIT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    NewJob,
    encode_output,
    parse_job_id,
)


def build(**overrides: Any) -> NewJob:
    """NewJob.build with valid arguments, except those given."""
    arguments: dict[str, Any] = {
        "id": uuid.uuid4(),
        "job_type": "email_processing",
        "input": {"message_id": "m-1"},
        "user_id": "user-1",
        "priority": 0,
        "max_retries": 3,
        "scheduled_for": None,
    }
    arguments.update(overrides)
    return NewJob.build(**arguments)


def test_valid_job_keeps_its_fields_and_compact_json_input() -> None:
    job = build(input={"a": [1, 2], "b": "é"})
    assert job.job_type == "email_processing"
    assert json.loads(job.input_json) == {"a": [1, 2], "b": "é"}
    assert " " not in job.input_json
    assert job.scheduled_for is None


def test_scheduled_for_is_truncated_to_milliseconds() -> None:
    when = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=123_999)
    job = build(scheduled_for=when)
    assert job.scheduled_for == when.replace(microsecond=123_000)
    assert job.scheduled_for.tzinfo is not None


def test_scheduled_for_keeps_its_timezone_and_instant() -> None:
    plus_two = timezone(timedelta(hours=2))
    when = (datetime.now(plus_two) + timedelta(hours=1)).replace(microsecond=0)
    assert build(scheduled_for=when).scheduled_for == when


def test_naive_scheduled_for_is_rejected() -> None:
    naive = datetime.now() + timedelta(hours=1)  # noqa: DTZ005 - naive on purpose
    with pytest.raises(InvalidJob, match="timezone-aware"):
        build(scheduled_for=naive)


@pytest.mark.parametrize(
    "when",
    [
        datetime(1999, 12, 31, tzinfo=UTC),
        datetime.now(UTC) + timedelta(days=366 * 10 + 1),
    ],
)
def test_scheduled_for_out_of_range_is_rejected(when: datetime) -> None:
    with pytest.raises(InvalidJob, match="out of range"):
        build(scheduled_for=when)


def test_scheduled_for_must_be_a_datetime() -> None:
    with pytest.raises(InvalidJob, match="must be a datetime"):
        build(scheduled_for="2030-01-01T00:00:00Z")


@pytest.mark.parametrize("field", ["priority", "max_retries"])
@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_accepted_as_an_integer(field: str, value: bool) -> None:
    with pytest.raises(InvalidJob, match=f"{field} must be an integer, got bool"):
        build(**{field: value})


@pytest.mark.parametrize("priority", [PRIORITY_MIN, PRIORITY_MAX])
def test_priority_bounds_are_inclusive(priority: int) -> None:
    assert build(priority=priority).priority == priority


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", PRIORITY_MIN - 1),
        ("priority", PRIORITY_MAX + 1),
        ("priority", 1.0),
        ("max_retries", -1),
        ("max_retries", MAX_RETRIES_LIMIT + 1),
    ],
)
def test_integer_fields_out_of_range_or_not_int_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(InvalidJob, match=field):
        build(**{field: value})


@pytest.mark.parametrize("value", [[], [1], "text", 1, None])
def test_input_must_be_a_dict(value: Any) -> None:
    with pytest.raises(InvalidJob, match="input must be a JSON object"):
        build(input=value)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_input_with_nan_or_infinity_is_rejected(number: float) -> None:
    with pytest.raises(InvalidJob, match="not JSON-serialisable"):
        build(input={"nested": {"x": number}})


def test_input_that_is_not_json_serialisable_is_rejected() -> None:
    with pytest.raises(InvalidJob, match="not JSON-serialisable"):
        build(input={"when": datetime.now(UTC)})


@pytest.mark.parametrize("job_type", ["", "1starts_with_digit", "has space", "{brace}", "x" * 101])
def test_job_type_that_could_not_name_a_redis_key_is_rejected(job_type: str) -> None:
    with pytest.raises(InvalidJob, match="job_type"):
        build(job_type=job_type)


@pytest.mark.parametrize("user_id", ["", "u" * 201, 42])
def test_user_id_must_be_a_short_non_empty_string(user_id: Any) -> None:
    with pytest.raises(InvalidJob, match="user_id"):
        build(user_id=user_id)


def test_invalid_job_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        build(priority=PRIORITY_MAX + 1)


def test_output_none_is_stored_as_null() -> None:
    assert encode_output(None) is None


def test_output_dict_is_encoded_as_compact_json() -> None:
    text = encode_output({"sent": True, "count": 2, "tags": ["a"]})
    assert text == '{"sent":true,"count":2,"tags":["a"]}'


@pytest.mark.parametrize(("value", "type_name"), [([1, 2], "list"), ("done", "str"), (0, "int")])
def test_output_other_than_dict_raises_type_error_naming_the_type(
    value: Any, type_name: str
) -> None:
    with pytest.raises(TypeError, match=f"must return a dict or None, got {type_name}"):
        encode_output(value)


@pytest.mark.parametrize("value", [{"x": object()}, {"x": float("nan")}, {"x": {1, 2}}])
def test_output_dict_that_is_not_json_serialisable_raises_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_output(value)


def test_job_id_string_parses_to_uuid() -> None:
    job_id = uuid.uuid4()
    assert parse_job_id(str(job_id)) == job_id
    assert parse_job_id(job_id) is job_id


@pytest.mark.parametrize("bad", ["not-a-uuid", "", "1234", None, 42, "x" * 500])
def test_malformed_job_id_is_job_not_found(bad: Any) -> None:
    with pytest.raises(JobNotFound, match="not a UUID"):
        parse_job_id(bad)
