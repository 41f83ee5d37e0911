"""RFC 3339 times as configs carry them (`descriptor.created`, ModelPack's `createdAt`): one parser."""

from __future__ import annotations

from datetime import datetime, timezone


def parse_rfc3339(text) -> datetime | None:
    """An RFC 3339 time from a config (`created`, `createdAt`), in UTC; None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def unix_time(text) -> int:
    """Seconds since 1970 of an RFC 3339 time, 0 when absent or unreadable (OpenAI's `created`)."""
    t = parse_rfc3339(text)
    return int(t.timestamp()) if t else 0
