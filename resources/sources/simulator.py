"""A deterministic simulator of a card-payments business: Flywheel's default source system.

The platform needs a source that behaves like a real one - seasonal volume, stable customers and
merchants, a small and delayed fraud signal - and that can be made to misbehave on demand (bad
batches, late or missing partitions, drift) so that every check and monitor downstream can be
exercised against a known ground truth. Real data cannot give that ground truth; this module can.

Determinism is the central contract: a day's batch depends only on the seed, the simulator's
settings and the date, never on which other days were generated or in what order. Each day seeds
its own numpy generators from ``(seed, date)``, with one independent stream per purpose (clean
data, drift, incidents, labels). Because of that, switching a scenario on never changes the clean
part of a day, so an incident day can be compared row by row with the same day without it. Within
a stream the draws happen in a fixed order, which the steps of a day below must keep. Compromised
terminals and cards last weeks, yet keep the contract: who becomes compromised on a day is drawn
from that day's own onset stream, and a day reads the onsets of the weeks before it, never their
data.

Everything is vectorised numpy; string columns are gathered from tiny category Series, so a day of
ten million rows takes a few seconds and about the memory of the resulting frame. Days and their
chargebacks are generated here; the vocabularies, the population, the fraud model and the
incidents live in the sibling modules ``schema``, ``population``, ``fraud`` and ``incidents``.
"""

import datetime
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from resources.sources.fraud import (
    CARD_COMPROMISE_DAYS,
    TERMINAL_COMPROMISE_DAYS,
    card_fraud_share,
    compromise_frauds,
    compromise_onsets,
    fraud_probability,
    terminal_candidates,
)
from resources.sources.incidents import Scenario, apply_incidents, delivery_delay, empty_bad_rows
from resources.sources.population import build_population
from resources.sources.schema import (
    ATM,
    CHANNELS,
    CHARGEBACK_REASONS,
    COUNTRIES,
    CURRENCIES,
    MAX_AMOUNT,
    MERCHANT_CATEGORIES,
    MIN_AMOUNT,
    ONLINE,
    TRANSACTION_SCHEMA,
)

# Ticket size relative to the customer's typical spend, per merchant category: a television
# costs more than a coffee.
_CATEGORY_AMOUNT_FACTOR = (0.8, 0.7, 1.0, 1.2, 3.0, 4.0, 0.9, 0.5, 1.1, 2.0)

# Hour-of-day volume profile (UTC): quiet nights, a lunch peak and an evening peak.
_HOUR_WEIGHTS = (
    0.6, 0.4, 0.3, 0.25, 0.25, 0.4, 0.9, 1.8, 2.8, 3.4, 3.8, 4.2,
    5.0, 4.8, 4.2, 4.0, 4.2, 4.8, 5.2, 5.0, 4.4, 3.6, 2.4, 1.3,
)  # fmt: skip
_NIGHT_END_HOUR = 6
# Monday..Sunday volume multipliers: busy Fridays and Saturdays, quiet Sundays.
_WEEKDAY_VOLUME = (0.97, 0.98, 1.00, 1.00, 1.04, 1.06, 0.95)
_VOLUME_NOISE = 0.01

_BASE_FOREIGN_SHARE = 0.06
_DRIFTED_FOREIGN_SHARE = 0.40  # under a covariate drift of intensity 1
_FOREIGN_SHARE_DRIFT = _DRIFTED_FOREIGN_SHARE - _BASE_FOREIGN_SHARE

_EPOCH_2000 = datetime.date(2000, 1, 1)
_ROWS_PER_DAY_ID_SPACE = 10**10
_AVAILABILITY_DELAY = datetime.timedelta(days=1, minutes=30)
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR
_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

# Independent random streams per day: switching a scenario on must not shift the clean draws.
# (The population uses the date slot 0, which no day's ordinal takes.) The onset streams draw the
# terminals and cards compromised on that day, which the next days read too: a day's compromised
# set is the union of the onsets of the days within a compromise's duration before it, so any day
# can be generated alone.
(
    _STREAM_CLEAN,
    _STREAM_DRIFT,
    _STREAM_INCIDENTS,
    _STREAM_LABELS,
    _STREAM_TERMINAL_ONSETS,
    _STREAM_CARD_ONSETS,
) = range(6)
# Onset days kept: both kinds' durations for a few days of jumping back and forth.
_ONSET_CACHE_SIZE = 4 * (TERMINAL_COMPROMISE_DAYS + CARD_COMPROMISE_DAYS)


@dataclass(frozen=True)
class SimulatedDay:
    """One day of the source, as delivered, with the ground truth needed to grade consumers.

    Attributes:
        transactions: The batch as the source delivers it, incidents applied. Empty (with the
            contract schema) when the partition never arrives.
        injected_bad_rows: One row per (position in ``transactions``, incident) for the row-level
            incidents null_spike, out_of_range and duplicates. Columns ``row`` (polars index
            type, the same as ``with_row_index``) and ``incident`` (String), sorted by both. For
            duplicates only the later copy is listed. A copy of a corrupted row carries the
            corruption too, so it is listed under both incidents.
        available_at: When the partition lands at the source (UTC), or None if it never does.
    """

    transactions: pl.DataFrame
    injected_bad_rows: pl.DataFrame
    available_at: datetime.datetime | None


@dataclass(frozen=True)
class _CleanDay:
    """A day's true transactions (drift applied, no incidents) as numpy arrays of codes."""

    transaction_id: np.ndarray  # int64
    customer: np.ndarray  # int64 index into the population
    merchant: np.ndarray  # int64 index into the population
    amount: np.ndarray  # float64
    channel: np.ndarray  # int8 code
    timestamp_us: np.ndarray  # int64 microseconds since the Unix epoch, sorted
    fraud: np.ndarray  # bool


def _day_start_us(day: datetime.date) -> int:
    start = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
    return (start - _UNIX_EPOCH) // datetime.timedelta(microseconds=1)


def _check_day(day: datetime.date) -> None:
    # A datetime is a date subclass; accepting one would silently key days by a timestamp.
    if not isinstance(day, datetime.date) or isinstance(day, datetime.datetime):
        raise TypeError(f"day must be a datetime.date, got {day!r}")


def _volume(rng: np.random.Generator, rows_per_day: int, day: datetime.date) -> int:
    """The day's number of transactions: the weekday's share of the average, plus a little noise."""
    noise = float(np.clip(rng.normal(0.0, _VOLUME_NOISE), -3 * _VOLUME_NOISE, 3 * _VOLUME_NOISE))
    return max(1, round(rows_per_day * _WEEKDAY_VOLUME[day.weekday()] * (1.0 + noise)))


def _timestamps(
    rng: np.random.Generator, n: int, day: datetime.date
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted event times (int64 microseconds since the Unix epoch), and whether each is at night.

    Sorted without a sort: cumulative exponential spacings are sorted uniforms, and the inverse
    CDF of the hour profile is monotone, so it keeps them sorted.
    """
    spacing = rng.standard_exponential(n + 1)
    np.cumsum(spacing, out=spacing)
    uniform_sorted = spacing[:-1]
    uniform_sorted /= spacing[-1]
    hour_cdf = np.concatenate([[0.0], np.cumsum(_HOUR_WEIGHTS) / sum(_HOUR_WEIGHTS)])
    hours = np.interp(uniform_sorted, hour_cdf, np.arange(25.0))
    del spacing, uniform_sorted
    night = hours < _NIGHT_END_HOUR
    hours *= _US_PER_HOUR
    timestamp_us = hours.astype(np.int64)
    del hours
    timestamp_us += _day_start_us(day)
    return timestamp_us, night


def _amounts(rng: np.random.Generator, typical: np.ndarray, category: np.ndarray) -> np.ndarray:
    """Unrounded float64 amounts around the customers' typical spend.

    The typical spend is scaled by category, with lognormal noise and an occasional big purchase.
    """
    log_noise = rng.standard_normal(typical.size, dtype=np.float32)
    log_noise *= np.float32(0.5)
    big = rng.standard_exponential(typical.size, dtype=np.float32)
    big -= np.float32(2.5)
    np.maximum(big, np.float32(0), out=big)
    log_noise += np.float32(0.4) * big
    del big
    amount = np.exp(log_noise, dtype=np.float64)
    del log_noise
    amount *= typical
    amount *= np.asarray(_CATEGORY_AMOUNT_FACTOR)[category]
    return amount


def _drift_covariates(
    rng: np.random.Generator, amount: np.ndarray, channel: np.ndarray, covariate: float
) -> None:
    """Covariate drift, in place: larger amounts, and card payments moving online (not ATMs)."""
    amount *= 1.0 + 2.0 * covariate
    to_online = rng.random(amount.size, dtype=np.float32) < 0.5 * covariate
    to_online &= channel != ATM
    channel[to_online] = ONLINE


class CardPaymentsSimulator:
    """Generates the card-payments source: daily transaction batches and chargeback reports.

    Args:
        seed: Seeds the population and, together with the date, every day.
        rows_per_day: Average daily volume; actual volume varies by a few percent with the
            weekday and a little noise.
        scenarios: Incidents and drifts to apply on their date ranges; they can overlap.
        max_label_delay_days: Chargebacks are reported 1..max_label_delay_days days after the
            transaction.
    """

    def __init__(
        self,
        seed: int = 7,
        rows_per_day: int = 2_000,
        scenarios: Sequence[Scenario] = (),
        max_label_delay_days: int = 30,
    ) -> None:
        """Build the population once; days are generated on demand from (seed, date)."""
        if rows_per_day < 1:
            raise ValueError(f"rows_per_day must be >= 1, got {rows_per_day}")
        if max_label_delay_days < 1:
            raise ValueError(f"max_label_delay_days must be >= 1, got {max_label_delay_days}")
        for scenario in scenarios:
            if not isinstance(scenario, Scenario):
                raise TypeError(f"scenarios must contain Scenario objects, got {scenario!r}")
        self.seed = seed
        self.rows_per_day = rows_per_day
        self.scenarios = tuple(scenarios)
        self.max_label_delay_days = max_label_delay_days
        self._population = build_population(
            seed, n_customers=max(200, rows_per_day // 4), n_merchants=max(50, rows_per_day // 200)
        )
        pop = self._population
        self._terminal_candidates = terminal_candidates(
            pop.merchant_volume_share(_BASE_FOREIGN_SHARE)
        )
        self._card_share = card_fraud_share(rows_per_day * pop.customer_volume_share())
        # Where in their cycle the onset counts round up: from the seed alone (date slot 0).
        self._onset_phase = {
            kind: float(np.random.default_rng([seed, 0, stream]).random())
            for kind, stream in (
                ("terminal", _STREAM_TERMINAL_ONSETS),
                ("card", _STREAM_CARD_ONSETS),
            )
        }
        delay_weights = np.exp(-np.arange(max_label_delay_days) / 6.0)  # most within two weeks
        self._delay_p = delay_weights / delay_weights.sum()
        # Chargebacks per transaction day are tiny (the fraud rows only); keeping the recent ones
        # lets consecutive chargebacks() calls reuse them instead of regenerating 30 days.
        self._chargeback_cache: OrderedDict[datetime.date, pl.DataFrame] = OrderedDict()
        # A day reads the onsets of the weeks before it, and consecutive days share all but one:
        # keeping the recent ones (tiny index arrays) saves drawing them again for every day.
        self._onset_cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def day(self, day: datetime.date) -> SimulatedDay:
        """The transactions batch of ``day`` as the source delivers it.

        Args:
            day: The business day (UTC) of the partition.

        Returns:
            The delivered batch, the ground truth of corrupted rows and the availability time.
        """
        _check_day(day)
        active = [s for s in self.scenarios if s.active_on(day)]
        clean = self._clean_day(day)
        self._remember_chargebacks(day, clean)
        delay = delivery_delay(active)
        if delay is None:
            empty = pl.DataFrame(schema=TRANSACTION_SCHEMA)
            return SimulatedDay(empty, empty_bad_rows(), None)
        start = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
        available_at = start + _AVAILABILITY_DELAY + delay

        transactions = self._to_frame(clean)
        del clean
        rng = np.random.default_rng([self.seed, day.toordinal(), _STREAM_INCIDENTS])
        transactions, bad_rows = apply_incidents(rng, transactions, active)
        return SimulatedDay(transactions, bad_rows, available_at)

    def payments(self, day: datetime.date) -> pl.DataFrame:
        """The payments of ``day`` as they happened: what a live API saw, whatever the batch.

        Drift applies (it is the world's); the batch's incidents do not (they are the
        delivery's), so live traffic on a bad batch's day still has the contract's columns.
        """
        _check_day(day)
        return self._to_frame(self._clean_day(day))

    def chargebacks(self, report_day: datetime.date) -> pl.DataFrame:
        """Fraud labels reported on ``report_day``, as the issuer's chargeback feed delivers them.

        Covers transactions of the days ``report_day - max_label_delay_days`` to
        ``report_day - 1``. Labels refer to the true transactions, so a transaction lost to an
        incident in the delivered batch can still be charged back, as in real life.

        Args:
            report_day: The day (UTC) the chargebacks are reported.

        Returns:
            Columns ``CHARGEBACK_COLUMNS``, sorted by ``reported_at`` then ``transaction_id``.
        """
        _check_day(report_day)
        frames = []
        for lag in range(self.max_label_delay_days, 0, -1):
            reports = self._chargebacks_of_transaction_day(report_day - datetime.timedelta(lag))
            frames.append(reports.filter(pl.col("reported_at").dt.date() == report_day))
        return pl.concat(frames).sort("reported_at", "transaction_id")

    def compromised_merchants(self, day: datetime.date) -> np.ndarray:
        """Ground truth: the merchants whose terminals are compromised on ``day``.

        Who becomes compromised on a day is drawn from ``(seed, that day)`` alone, and stays so
        for ``TERMINAL_COMPROMISE_DAYS`` days, that day included. Meanwhile a substantial share
        of the merchant's payments are fraud (see ``resources.sources.fraud``).

        Returns:
            Sorted int64 ``merchant_id`` values, as in the transactions.
        """
        _check_day(day)
        return np.flatnonzero(self._compromised(day, "terminal")) + 1

    def compromised_customers(self, day: datetime.date) -> np.ndarray:
        """Ground truth: the customers whose cards are compromised on ``day``.

        Who becomes compromised on a day is drawn from ``(seed, that day)`` alone, and stays so
        for ``CARD_COMPROMISE_DAYS`` days, that day included. Meanwhile some of the customer's
        payments are the fraudster's, for far more than the customer usually spends.

        Returns:
            Sorted int64 ``customer_id`` values, as in the transactions.
        """
        _check_day(day)
        return np.flatnonzero(self._compromised(day, "card")) + 1

    def _compromised(self, day: datetime.date, kind: str) -> np.ndarray:
        """Whether each merchant (``"terminal"``) or customer (``"card"``) is compromised.

        The union of the onsets of the compromise's duration up to ``day``, each onset drawn from
        its own day's stream: no other day's data is needed.
        """
        if kind == "terminal":
            stream, duration = _STREAM_TERMINAL_ONSETS, TERMINAL_COMPROMISE_DAYS
            candidates, size = self._terminal_candidates, self._population.merchant_risk.size
        else:
            stream, duration = _STREAM_CARD_ONSETS, CARD_COMPROMISE_DAYS
            candidates, size = np.arange(self._card_share.size), self._card_share.size
        compromised = np.zeros(size, dtype=bool)
        last = day.toordinal()
        for onset in range(max(1, last - duration + 1), last + 1):
            with self._cache_lock:
                onsets = self._onset_cache.get((kind, onset))
            if onsets is None:
                rng = np.random.default_rng([self.seed, onset, stream])
                onsets = compromise_onsets(rng, candidates, kind, onset, self._onset_phase[kind])
                with self._cache_lock:
                    self._onset_cache[(kind, onset)] = onsets
                    while len(self._onset_cache) > _ONSET_CACHE_SIZE:
                        self._onset_cache.popitem(last=False)
            compromised[onsets] = True
        return compromised

    def _drift_intensity(self, kind: str, day: datetime.date) -> float:
        """Combined intensity of the drifts of ``kind`` active on ``day``, capped at 1."""
        return min(
            1.0, sum(s.intensity for s in self.scenarios if s.kind == kind and s.active_on(day))
        )

    def _clean_day(self, day: datetime.date) -> _CleanDay:
        """Generate the day's true transactions: population behaviour plus any active drift.

        The steps draw from the day's clean stream in this order - volume, timestamps,
        customers, merchants, channels, amounts, the compromised cards' and terminals' frauds,
        fraud labels - and the covariate drift from its own stream, so that switching the drift
        on leaves the other draws unchanged. Which cards and terminals are compromised comes from
        the onset streams of this day and the days before it.
        """
        pop = self._population
        ordinal = day.toordinal()
        rng = np.random.default_rng([self.seed, ordinal, _STREAM_CLEAN])
        covariate = self._drift_intensity("covariate_drift", day)
        concept = self._drift_intensity("concept_drift", day)

        n = _volume(rng, self.rows_per_day, day)
        timestamp_us, night = _timestamps(rng, n, day)
        customer = pop.draw_customers(rng, n)
        foreign_share = _BASE_FOREIGN_SHARE + _FOREIGN_SHARE_DRIFT * covariate
        merchant, foreign = pop.draw_merchants(rng, customer, foreign_share)
        channel = pop.draw_channels(rng, customer, merchant)
        typical = pop.customer_typical_spend[customer]
        amount = _amounts(rng, typical, pop.merchant_category[merchant])
        if covariate > 0:
            drift_rng = np.random.default_rng([self.seed, ordinal, _STREAM_DRIFT])
            _drift_covariates(drift_rng, amount, channel, covariate)
        compromise_fraud = compromise_frauds(
            rng,
            customer=customer,
            merchant=merchant,
            amount=amount,
            card_compromised=self._compromised(day, "card"),
            card_share=self._card_share,
            terminal_compromised=self._compromised(day, "terminal"),
            concept_drift=concept,
        )
        np.round(amount, 2, out=amount)
        np.clip(amount, MIN_AMOUNT, MAX_AMOUNT, out=amount)

        probability = fraud_probability(
            amount / typical,
            amount=amount,
            foreign=foreign,
            channel=channel,
            night=night,
            merchant_risk=pop.merchant_risk[merchant],
            concept_drift=concept,
        )
        del typical, night, foreign
        fraud = rng.random(n, dtype=np.float32) < probability
        del probability
        fraud[compromise_fraud] = True

        transaction_id = np.arange(n, dtype=np.int64)
        transaction_id += (day - _EPOCH_2000).days * _ROWS_PER_DAY_ID_SPACE
        return _CleanDay(
            transaction_id=transaction_id,
            customer=customer,
            merchant=merchant,
            amount=amount,
            channel=channel,
            timestamp_us=timestamp_us,
            fraud=fraud,
        )

    def _to_frame(self, clean: _CleanDay) -> pl.DataFrame:
        """Turn the codes into the contract frame, taking over the arrays of ``clean``.

        polars wraps numeric numpy arrays without copying and the strings are gathered from tiny
        Series, so building the frame costs little beyond the frame itself. The id arrays are
        shifted in place; ``clean`` must not be used afterwards.
        """
        pop = self._population

        def labels(name: str, values: tuple[str, ...], codes: np.ndarray) -> pl.Series:
            return pl.Series(name, values).gather(pl.Series(codes.astype(np.uint32)))

        merchant_country = pop.merchant_country[clean.merchant]
        currency = labels("currency", CURRENCIES, pop.country_currency[merchant_country])
        country = labels("country", COUNTRIES, merchant_country)
        del merchant_country
        category = labels(
            "merchant_category", MERCHANT_CATEGORIES, pop.merchant_category[clean.merchant]
        )
        channel = labels("channel", CHANNELS, clean.channel)
        customer_id = clean.customer
        customer_id += 1
        merchant_id = clean.merchant
        merchant_id += 1
        return pl.DataFrame(
            [
                pl.Series("transaction_id", clean.transaction_id),
                pl.Series("customer_id", customer_id),
                pl.Series("merchant_id", merchant_id),
                pl.Series("amount", clean.amount),
                currency,
                category,
                channel,
                country,
                pl.Series("event_timestamp", clean.timestamp_us).cast(pl.Datetime("us", "UTC")),
            ]
        )

    def _chargebacks_of_transaction_day(self, day: datetime.date) -> pl.DataFrame:
        """All chargebacks, whatever their report day, for the transactions of ``day``."""
        with self._cache_lock:
            if day in self._chargeback_cache:
                self._chargeback_cache.move_to_end(day)
                return self._chargeback_cache[day]
        return self._remember_chargebacks(day, self._clean_day(day))

    def _remember_chargebacks(self, day: datetime.date, clean: _CleanDay) -> pl.DataFrame:
        """Derive the day's chargebacks from its fraud rows and keep them for later reports."""
        rows = np.flatnonzero(clean.fraud)
        rng = np.random.default_rng([self.seed, day.toordinal(), _STREAM_LABELS])
        delay_days = rng.choice(len(self._delay_p), rows.size, p=self._delay_p) + 1
        # Reported during the issuer's working hours, 08:00-20:00 UTC, on a later day.
        time_of_day = rng.integers(8 * _US_PER_HOUR, 20 * _US_PER_HOUR, rows.size)
        reported_us = _day_start_us(day) + delay_days * _US_PER_DAY + time_of_day

        channel = clean.channel[rows]
        card_present_reason = np.where(rng.random(rows.size) < 0.6, 2, 3)  # stolen or counterfeit
        online_reason = np.where(rng.random(rows.size) < 0.8, 0, 1)  # card-not-present or ATO
        reason = np.where(channel == ONLINE, online_reason, card_present_reason)

        frame = pl.DataFrame(
            [
                pl.Series("transaction_id", clean.transaction_id[rows]),
                pl.Series("customer_id", clean.customer[rows] + 1),
                pl.Series("transaction_timestamp", clean.timestamp_us[rows]).cast(
                    pl.Datetime("us", "UTC")
                ),
                pl.Series("reported_at", reported_us.astype(np.int64)).cast(
                    pl.Datetime("us", "UTC")
                ),
                pl.Series("reason", CHARGEBACK_REASONS).gather(pl.Series(reason.astype(np.uint32))),
            ]
        )
        with self._cache_lock:
            self._chargeback_cache[day] = frame
            self._chargeback_cache.move_to_end(day)
            while len(self._chargeback_cache) > self.max_label_delay_days + 1:
                self._chargeback_cache.popitem(last=False)
        return frame
