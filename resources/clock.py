"""The one clock every asset and sensor reads, so tests and demos can stop or move time."""

import datetime

from dagster import ConfigurableResource


class Clock(ConfigurableResource):
    """Wall-clock time in UTC, or a fixed instant when ``frozen_at`` is set.

    Attributes:
        frozen_at: ISO-8601 instant (e.g. ``2026-03-02T06:00:00+00:00``) to report instead of
            the real time; naive values are read as UTC. Leave empty for the real time.
    """

    frozen_at: str | None = None

    def now(self) -> datetime.datetime:
        """The current instant, timezone-aware (UTC)."""
        if not self.frozen_at:
            return datetime.datetime.now(datetime.UTC)
        instant = datetime.datetime.fromisoformat(self.frozen_at)
        if instant.tzinfo is None:
            return instant.replace(tzinfo=datetime.UTC)
        return instant.astimezone(datetime.UTC)
