"""The domain services the example handlers delegate to.

These are deterministic in-process stand-ins (no network, no clock, no randomness) so the
examples run anywhere. A real service has the same shape: an object built once at the edge
(holding its HTTP client or pool) whose async methods raise ``TransientServiceError`` for
failures that a later attempt may not hit (timeouts, 5xx, rate limits). Handlers let that
error propagate so the queue retries the job; they never catch it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field


class TransientServiceError(Exception):
    """A failure that retrying may fix. Deliberately not a ``queue_core`` error: the domain
    does not know about the queue, and the queue retries any exception but
    ``PermanentJobError``."""


def _stable_number(*parts: str) -> int:
    """The same inputs give the same number in every process (unlike ``hash()``)."""
    return zlib.crc32("\x1f".join(parts).encode())


class EmailProcessor:
    """Stands in for the mail pipeline: fetch one message, classify it, apply labels."""

    async def process_message(self, user_id: str, message_id: str) -> int:
        """Process one message of ``user_id``'s mailbox; returns how many labels were applied
        (0..3)."""
        return _stable_number(user_id, message_id) % 4


class CalendarSyncer:
    """Stands in for a calendar provider's sync: copy upcoming events into our store."""

    async def sync(self, user_id: str, calendar_id: str, days: int) -> int:
        """Sync the next ``days`` days of one calendar; returns how many events were synced
        (at most 3 a day)."""
        return _stable_number(user_id, calendar_id) % (3 * days + 1)


class BriefingWriter:
    """Stands in for a summariser that writes a short briefing on a topic."""

    async def write(self, topic: str, user_id: str | None) -> str:
        """A briefing on ``topic``, addressed to ``user_id`` when there is one."""
        audience = f" for {user_id}" if user_id else ""
        return f"Briefing on {topic}{audience}: no new developments."


@dataclass(frozen=True)
class Services:
    """The domain services handlers need, built once at the edge and passed to
    ``handlers.register``. Each defaults to the in-process stand-in above."""

    email: EmailProcessor = field(default_factory=EmailProcessor)
    calendar: CalendarSyncer = field(default_factory=CalendarSyncer)
    briefing: BriefingWriter = field(default_factory=BriefingWriter)
