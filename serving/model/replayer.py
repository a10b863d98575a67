"""Live traffic for the prediction service: the simulator's payments sent at a chosen rate.

The payments are the simulator's own for the given days (the same seed and volume as the
platform's source), so once those days are ingested their chargebacks reach the prediction log's
rows through the label feed, by transaction id. Requests are paced on a fixed schedule (open
loop): a slow answer does not slow the offered rate as long as a worker is free.

Run it against a running service::

    .venv/bin/python -m serving.model.replayer --day 2026-12-01 --rate 100

or, as ``make demo`` does, follow the platform's clock and send each payment as it happens
(``--follow``: the scenario's compressed clock and simulated world, sampled to ``--rate``).
"""

import argparse
import datetime
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import polars as pl

from resources.clock import Clock
from resources.environments import local_data_dir
from resources.scenario import playing_scenario
from resources.sources.systems import SimulatedSource

REQUEST_FIELDS = ("transaction_id", "customer_id", "merchant_id", "amount", "country")


def simulated_payments(source: SimulatedSource, days: Sequence[str]) -> pl.DataFrame:
    """The simulator's payments of ``days`` as they happened (no batch incident), in time order."""
    frames = [source.simulator.payments(datetime.date.fromisoformat(d)) for d in days]
    return pl.concat(frames).sort("event_timestamp")


def payloads(payments: pl.DataFrame) -> list[dict]:
    """``/predict`` request bodies for ``payments`` (raw or validated transaction rows)."""
    return payments.select(
        pl.col("transaction_id").cast(pl.String),
        # A dataset without a country sends none.
        *[name for name in REQUEST_FIELDS[1:] if name in payments.columns],
        timestamp=pl.col("event_timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
    ).to_dicts()


@dataclass
class ReplayStats:
    """What a replay sent and got back: statuses, latencies (ms), the rate it reached."""

    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def achieved_rps(self) -> float:
        """Answered requests per second of wall time."""
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


def replay(
    url: str, bodies: Sequence[dict], rate: float, workers: int = 4, path: str = "/predict"
) -> ReplayStats:
    """POST each body to ``url + path`` at ``rate`` requests per second; time every answer."""
    return paced(
        lambda http, i: http.post(path, json=bodies[i]).status_code, len(bodies), rate, url, workers
    )


def paced(
    call: Callable[[httpx.Client, int], int | str],
    count: int,
    rate: float,
    url: str,
    workers: int = 4,
) -> ReplayStats:
    """Make ``count`` calls ``call(client, i)`` at ``rate`` per second; time each one.

    Call ``i`` is due at ``i / rate`` seconds after the start; ``workers`` threads take the calls
    in turn, each with its own keep-alive client on ``url``. A call returns its HTTP status.
    """
    stats = ReplayStats()
    lock = threading.Lock()
    start = time.perf_counter()

    def work(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in range(worker, count, workers):
                due = start + i / rate
                if (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
                sent = time.perf_counter()
                try:
                    status = call(http, i)
                except httpx.HTTPError as error:
                    status = type(error).__name__
                took = (time.perf_counter() - sent) * 1000
                with lock:
                    stats.statuses[status] += 1
                    if status == 200:
                        stats.latencies_ms.append(took)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats.seconds = time.perf_counter() - start
    return stats


def follow(url: str, source: SimulatedSource, clock: Clock, rate: float) -> None:
    """Send, every second, a sample of the payments made since the last send, forever.

    The payments are those the simulator makes between two readings of ``clock``, so on a
    compressed clock the service sees the scenario's present (its drifts included), thinned to
    ``rate`` a second on average. Thinned by a constant share, not to a count a second: the
    traffic keeps the day's rhythm (few payments at night), as the models' holdouts had it. A
    fixed count a second sent every night payment and a sliver of the day's, so a model that
    learned night-time fraud saw its live scores shift from its holdout's (PSI 0.40) and its
    canary was rolled back. Answers are not checked: before the first champion they are 503s.
    """
    sent_until, sent_at = clock.now(), time.monotonic()
    day = None
    while True:
        time.sleep(1.0)
        now = min(clock.now(), _next_midnight(sent_until))  # a send never crosses a day's end
        if day is None or day[0] != sent_until.date():
            day = (sent_until.date(), simulated_payments(source, [sent_until.date().isoformat()]))
        sample = thinned(day[1], sent_until, now, rate * (time.monotonic() - sent_at))
        sent_until, sent_at = now, time.monotonic()
        if sample.height:
            # Within about a second, busy hours' samples too, so the next one is not late.
            replay(url, payloads(sample), max(rate, sample.height), workers=2)


def thinned(
    day: pl.DataFrame, start: datetime.datetime, end: datetime.datetime, allowed: float
) -> pl.DataFrame:
    """The payments of ``day`` made in (``start``, ``end``], one in every so many.

    As many as ``allowed`` of those the day makes in such an interval on average: more in busy
    hours, fewer at night.
    """
    expected = day.height * (end - start).total_seconds() / 86_400
    happened = day.filter(pl.col("event_timestamp").is_between(start, end, "right"))
    if allowed < 1:
        return happened.clear()
    return happened.gather_every(max(1, round(expected / allowed)))


def _next_midnight(instant: datetime.datetime) -> datetime.datetime:
    """The start of the day after ``instant``."""
    return datetime.datetime.combine(
        instant.date() + datetime.timedelta(days=1), datetime.time(), tzinfo=instant.tzinfo
    )


def main() -> None:
    """Replay simulated days against a running prediction service and print what happened."""
    parser = argparse.ArgumentParser(description="Send the simulator's payments to the service")
    parser.add_argument("--url", default="http://127.0.0.1:8800")
    parser.add_argument("--day", action="append", help="YYYY-MM-DD (repeatable)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--rows-per-day", type=int, default=10_000, help="the simulator's volume")
    parser.add_argument("--limit", type=int, default=0, help="send at most this many (0: all)")
    parser.add_argument(
        "--follow", action="store_true", help="send the present's payments as they happen"
    )
    args = parser.parse_args()
    if args.follow:
        scenario = playing_scenario(local_data_dir())
        source = scenario.get("source", SimulatedSource(rows_per_day=args.rows_per_day))
        follow(args.url, source, scenario.get("clock", Clock()), args.rate)
        return
    if not args.day:
        parser.error("--day is required unless --follow")
    bodies = payloads(simulated_payments(SimulatedSource(rows_per_day=args.rows_per_day), args.day))
    stats = replay(args.url, bodies[: args.limit or None], args.rate)
    ordered = sorted(stats.latencies_ms) or [0.0]
    summary = {
        "sent": sum(stats.statuses.values()),
        "statuses": {str(k): v for k, v in stats.statuses.items()},
        "achieved_rps": round(stats.achieved_rps, 1),
        "p50_ms": round(ordered[len(ordered) // 2], 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)], 3),
    }
    print(json.dumps(summary))  # noqa: T201 (the command's output)


if __name__ == "__main__":
    main()
