"""The one clock every asset and sensor reads, so tests and demos can stop or move time."""

import datetime
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field


class Clock(ConfigurableResource):
    """Wall-clock time in UTC, a fixed instant, or a compressed clock that plays a scenario.

    Every asset, check and sensor asks this resource for "now", never ``datetime.now()``, so the
    same code runs on real time (``make dev``), on a frozen instant (tests) or on a compressed
    clock (``make demo``: a simulated day per minute, the same instant in every process because
    it is computed from the configured start rather than kept in memory). A compressed clock
    can wait for its start: until ``real_from_file`` exists it stands at ``simulated_from``.

    Attributes:
        frozen_at: ISO-8601 instant (e.g. ``2026-03-02T06:00:00+00:00``) to report instead of
            the real time; naive values are read as UTC. Leave empty for the real time.
        simulated_from: With ``real_from``: the simulated instant at ``real_from``.
        real_from: The real instant (ISO-8601) at which the simulated clock showed
            ``simulated_from``.
        real_from_file: Instead of ``real_from``: a file holding that instant, written when the
            clock is to start (``make demo`` writes it once the first champion serves).
        speed: Simulated seconds per real second on the compressed clock (1440: a day a minute).
    """

    frozen_at: str | None = None
    simulated_from: str | None = None
    real_from: str | None = None
    real_from_file: str | None = None
    speed: float = Field(default=1.0, gt=0)

    def now(self) -> datetime.datetime:
        """The current instant, timezone-aware (UTC)."""
        if self.frozen_at:
            return _utc(self.frozen_at)
        real_now = datetime.datetime.now(datetime.UTC)
        if not self.simulated_from:
            return real_now
        started = self.real_from or self._started_from_file()
        if started is None:
            return _utc(self.simulated_from)
        elapsed = (real_now - _utc(started)).total_seconds()
        return _utc(self.simulated_from) + datetime.timedelta(seconds=elapsed * self.speed)

    def _started_from_file(self) -> str | None:
        """The real start instant written to ``real_from_file``, or None while it is absent."""
        if not self.real_from_file:
            return None
        try:
            return Path(self.real_from_file).read_text().strip() or None
        except FileNotFoundError:
            return None


def _utc(instant: str) -> datetime.datetime:
    """An ISO-8601 instant as an aware UTC datetime (naive values are UTC)."""
    parsed = datetime.datetime.fromisoformat(instant)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)
