"""A deterministic simulator of a card-payments business: Flywheel's default source system.

The platform needs a source that behaves like a real one - seasonal volume, stable customers and
merchants, a small and delayed fraud signal - and that can be made to misbehave on demand (bad
batches, late or missing partitions, drift) so that every check and monitor downstream can be
exercised against a known ground truth. Real data cannot give that ground truth; this module can.

Determinism is the central contract: a day's batch depends only on the seed, the simulator's
settings and the date, never on which other days were generated or in what order. Each day seeds
its own numpy generators from ``(seed, date)``, with one independent stream per purpose (clean
data, drift, incidents, labels). Because of that, switching a scenario on never changes the clean
part of a day, so an incident day can be compared row by row with the same day without it.

Everything is vectorised numpy; string columns are gathered from tiny category Series, so a day of
ten million rows takes a few seconds and about the memory of the resulting frame.
"""

import datetime
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

TRANSACTION_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "customer_id",
    "merchant_id",
    "amount",
    "currency",
    "merchant_category",
    "channel",
    "country",
    "event_timestamp",
)
CHARGEBACK_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "customer_id",
    "transaction_timestamp",
    "reported_at",
    "reason",
)

COUNTRIES: tuple[str, ...] = (
    "US",
    "GB",
    "DE",
    "FR",
    "ES",
    "IT",
    "NL",
    "CA",
    "MX",
    "BR",
    "JP",
    "AU",
)
# One dominant market, as for most card issuers: customers and merchants are drawn with these
# weights, so "foreign" is rare and therefore informative.
_COUNTRY_WEIGHTS = (0.55, 0.08, 0.07, 0.06, 0.04, 0.04, 0.03, 0.05, 0.03, 0.02, 0.02, 0.01)
_COUNTRY_CURRENCY = {
    "US": "USD",
    "GB": "GBP",
    "DE": "EUR",
    "FR": "EUR",
    "ES": "EUR",
    "IT": "EUR",
    "NL": "EUR",
    "CA": "CAD",
    "MX": "MXN",
    "BR": "BRL",
    "JP": "JPY",
    "AU": "AUD",
}
CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP", "CAD", "MXN", "BRL", "JPY", "AUD")

MERCHANT_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurants",
    "fuel",
    "retail",
    "electronics",
    "travel",
    "entertainment",
    "digital_goods",
    "health",
    "cash_withdrawal",
)
_CATEGORY_WEIGHTS = (0.22, 0.18, 0.10, 0.18, 0.06, 0.05, 0.08, 0.06, 0.04, 0.03)
# Ticket size relative to the customer's typical spend: a television costs more than a coffee.
_CATEGORY_AMOUNT_FACTOR = (0.8, 0.7, 1.0, 1.2, 3.0, 4.0, 0.9, 0.5, 1.1, 2.0)

CHANNELS: tuple[str, ...] = ("pos", "contactless", "online", "atm")
_POS, _CONTACTLESS, _ONLINE, _ATM = range(4)
_CASH_WITHDRAWAL = MERCHANT_CATEGORIES.index("cash_withdrawal")
# Card-present and card-not-present channels a customer chooses between; "atm" is not a choice,
# it is implied by a cash-withdrawal merchant.
_CHOSEN_CHANNEL_WEIGHTS = (0.40, 0.35, 0.25)
_PREFERRED_CHANNEL_SHARE = 0.7

CHARGEBACK_REASONS: tuple[str, ...] = (
    "card_not_present",
    "account_takeover",
    "lost_or_stolen",
    "counterfeit",
)

MAX_AMOUNT: float = 50_000.0
MIN_AMOUNT: float = 0.01

TRANSACTION_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.Int64(),
    "customer_id": pl.Int64(),
    "merchant_id": pl.Int64(),
    "amount": pl.Float64(),
    "currency": pl.String(),
    "merchant_category": pl.String(),
    "channel": pl.String(),
    "country": pl.String(),
    "event_timestamp": pl.Datetime("us", "UTC"),
}
CHARGEBACK_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.Int64(),
    "customer_id": pl.Int64(),
    "transaction_timestamp": pl.Datetime("us", "UTC"),
    "reported_at": pl.Datetime("us", "UTC"),
    "reason": pl.String(),
}

INCIDENT_KINDS: tuple[str, ...] = (
    "null_spike",
    "schema_change",
    "duplicates",
    "out_of_range",
    "volume_drop",
    "late_partition",
    "missing_partition",
)
DRIFT_KINDS: tuple[str, ...] = ("covariate_drift", "concept_drift")
# late_partition's intensity is hours of delay; every other kind's intensity is a share or a
# magnitude in [0, 1].
_UNBOUNDED_INTENSITY_KINDS = ("late_partition",)

# Hour-of-day volume profile (UTC): quiet nights, a lunch peak and an evening peak.
_HOUR_WEIGHTS = (
    0.6, 0.4, 0.3, 0.25, 0.25, 0.4, 0.9, 1.8, 2.8, 3.4, 3.8, 4.2,
    5.0, 4.8, 4.2, 4.0, 4.2, 4.8, 5.2, 5.0, 4.4, 3.6, 2.4, 1.3,
)  # fmt: skip
_NIGHT_END_HOUR = 6
# Monday..Sunday volume multipliers: busy Fridays and Saturdays, quiet Sundays.
_WEEKDAY_VOLUME = (0.97, 0.98, 1.00, 1.00, 1.04, 1.06, 0.95)
_VOLUME_NOISE = 0.01

_ACTIVITY_BANDS = 32
_ACTIVITY_RANGE = 100.0  # activity of the busiest customers relative to the quietest

_BASE_FOREIGN_SHARE = 0.06
_DRIFTED_FOREIGN_SHARE = 0.40

# Fraud model (normal regime): logit = _FRAUD_BASE + sum of weight * risk factor. The base is
# calibrated so that about 0.7 % of transactions are fraudulent.
_FRAUD_BASE = -6.75
_W_AMOUNT = 1.4  # per unit of log(amount / typical spend), counted above typical spend only
_W_FOREIGN = 1.4
_W_ONLINE = 1.0
_W_NIGHT = 0.9
_W_MERCHANT_RISK = 3.0
# Fraud model under concept drift: small, domestic, contactless payments ("tap and go" abuse).
_DRIFT_FRAUD_BASE = -8.1
_W_DRIFT_CONTACTLESS = 2.8
_W_DRIFT_DOMESTIC = 1.0
_W_DRIFT_SMALL = 1.5  # per unit of log(typical spend / amount), below typical spend only
_W_DRIFT_LARGE = -1.0  # per unit of log(amount / typical spend), above typical spend only

_EPOCH_2000 = datetime.date(2000, 1, 1)
_ROWS_PER_DAY_ID_SPACE = 10**10
_AVAILABILITY_DELAY = datetime.timedelta(days=1, minutes=30)
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR
_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

# Independent random streams per day: switching a scenario on must not shift the clean draws.
_STREAM_CLEAN, _STREAM_DRIFT, _STREAM_INCIDENTS, _STREAM_LABELS = range(4)
# Population seeds use 0 in the date slot; date ordinals start at 1, so they never collide.
_POPULATION_SLOT = 0


@dataclass(frozen=True)
class Scenario:
    """Something that happens to the source between two dates: an incident or a drift.

    Attributes:
        kind: One of ``INCIDENT_KINDS`` or ``DRIFT_KINDS``.
        start: First affected day.
        end: Last affected day (inclusive).
        intensity: Share of rows affected (null_spike, duplicates, out_of_range), share of volume
            lost (volume_drop), shift magnitude in [0, 1] (covariate_drift, concept_drift), or
            hours of delay (late_partition). Ignored by schema_change and missing_partition.
    """

    kind: str
    start: datetime.date
    end: datetime.date
    intensity: float = 1.0

    def __post_init__(self) -> None:
        """Reject scenarios that cannot mean anything, naming the offending field."""
        if self.kind not in INCIDENT_KINDS + DRIFT_KINDS:
            raise ValueError(
                f"Scenario.kind must be one of {INCIDENT_KINDS + DRIFT_KINDS}, got {self.kind!r}"
            )
        for field in ("start", "end"):
            value = getattr(self, field)
            if not isinstance(value, datetime.date) or isinstance(value, datetime.datetime):
                raise TypeError(f"Scenario.{field} must be a datetime.date, got {value!r}")
        if self.end < self.start:
            raise ValueError(f"Scenario.end ({self.end}) is before Scenario.start ({self.start})")
        intensity = float(self.intensity)
        if not math.isfinite(intensity) or intensity < 0:
            raise ValueError(f"Scenario.intensity must be finite and >= 0, got {self.intensity!r}")
        if intensity > 1 and self.kind not in _UNBOUNDED_INTENSITY_KINDS:
            raise ValueError(
                f"Scenario.intensity must be in [0, 1] for {self.kind}, got {self.intensity!r}"
            )

    def active_on(self, day: datetime.date) -> bool:
        """Whether the scenario affects ``day``.

        Args:
            day: The business day of a partition.

        Returns:
            True if ``start <= day <= end``.
        """
        return self.start <= day <= self.end


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


def fraud_probability(
    amount_ratio: np.ndarray,
    *,
    foreign: np.ndarray,
    channel: np.ndarray,
    night: np.ndarray,
    merchant_risk: np.ndarray,
    concept_drift: float = 0.0,
) -> np.ndarray:
    """Latent probability that a transaction is fraudulent.

    It is a logistic of interpretable risk factors so that a model has a real, learnable signal.
    In the normal regime the amount enters through ``max(0, log(amount_ratio))``, which makes the
    probability non-decreasing in the amount relative to the customer's typical spend. Under
    concept drift the logit moves, by ``concept_drift``, towards a different pattern (small,
    domestic, contactless payments) while the covariates stay the same.

    Args:
        amount_ratio: Amount divided by the customer's typical spend (> 0).
        foreign: Whether the merchant's country differs from the customer's home country.
        channel: Channel codes, indices into ``CHANNELS``.
        night: Whether the transaction happened between 00:00 and 06:00 UTC.
        merchant_risk: The merchant's latent risk level in [0, 1].
        concept_drift: Shift from the normal to the drifted fraud pattern, in [0, 1].

    Returns:
        float32 probabilities, one per transaction.
    """
    log_ratio = np.log(np.asarray(amount_ratio, dtype=np.float32))
    logit = np.float32(_W_AMOUNT) * np.maximum(log_ratio, np.float32(0))
    logit += np.float32(_FRAUD_BASE)
    logit += np.float32(_W_FOREIGN) * foreign
    logit += np.float32(_W_ONLINE) * (channel == _ONLINE)
    logit += np.float32(_W_NIGHT) * night
    logit += np.float32(_W_MERCHANT_RISK) * np.asarray(merchant_risk, dtype=np.float32)
    if concept_drift > 0:
        drifted = np.float32(_W_DRIFT_SMALL) * np.maximum(-log_ratio, np.float32(0))
        drifted += np.float32(_DRIFT_FRAUD_BASE)
        drifted += np.float32(_W_DRIFT_LARGE) * np.maximum(log_ratio, np.float32(0))
        drifted += np.float32(_W_DRIFT_CONTACTLESS) * (channel == _CONTACTLESS)
        drifted += np.float32(_W_DRIFT_DOMESTIC) * ~np.asarray(foreign, dtype=bool)
        logit *= np.float32(1 - concept_drift)
        logit += np.float32(concept_drift) * drifted
    # In-place logistic: 1 / (1 + exp(-logit)).
    np.negative(logit, out=logit)
    np.exp(logit, out=logit)
    logit += np.float32(1)
    return np.reciprocal(logit, out=logit)


@dataclass(frozen=True)
class _Population:
    """Customers and merchants; built once per simulator from the seed alone.

    Customers are stored ordered by activity band and merchants ordered by country, so that a
    weighted draw reduces to "pick a group, then a position inside it".
    """

    customer_home: np.ndarray  # int8 country code
    customer_typical_spend: np.ndarray  # float64
    customer_channel: np.ndarray  # int8 preferred channel code (pos, contactless or online)
    band_first_customer: np.ndarray  # int64; every band carries 1 / _ACTIVITY_BANDS of volume
    band_size: np.ndarray  # int64
    merchant_category: np.ndarray  # int8
    merchant_country: np.ndarray  # int8
    country_currency: np.ndarray  # int8 index into CURRENCIES, per country
    merchant_risk: np.ndarray  # float32
    country_first_merchant: np.ndarray  # int64
    country_merchant_count: np.ndarray  # int64


def _build_population(seed: int, n_customers: int, n_merchants: int) -> _Population:
    """Draw customers and merchants with stable, seed-determined behaviour."""
    rng = np.random.default_rng([seed, _POPULATION_SLOT])
    n_countries = len(COUNTRIES)

    # Heavy-tailed activity without a per-transaction search over millions of weights: customers
    # form bands that each carry the same share of the volume, with geometrically shrinking
    # sizes, so per-customer activity grows ~100x from the first band to the last (a Pareto-like
    # tail). Sampling a customer is then "uniform band, uniform customer inside it".
    band_share = np.exp(
        -np.log(_ACTIVITY_RANGE) / (_ACTIVITY_BANDS - 1) * np.arange(_ACTIVITY_BANDS)
    )
    band_share /= band_share.sum()
    band_size = np.maximum(1, np.floor(n_customers * band_share)).astype(np.int64)
    band_size[0] = n_customers - band_size[1:].sum()
    band_first = np.concatenate([[0], np.cumsum(band_size)[:-1]])

    customer_home = rng.choice(n_countries, n_customers, p=_COUNTRY_WEIGHTS).astype(np.int8)
    customer_typical_spend = rng.lognormal(np.log(30.0), 0.8, n_customers)
    customer_channel = rng.choice(3, n_customers, p=_CHOSEN_CHANNEL_WEIGHTS).astype(np.int8)

    # Every country gets at least one merchant, so a foreign purchase always has somewhere to go.
    merchant_country = np.concatenate(
        [
            np.arange(n_countries),
            rng.choice(n_countries, n_merchants - n_countries, p=_COUNTRY_WEIGHTS),
        ]
    )
    merchant_country = np.sort(merchant_country).astype(np.int8)
    country_merchant_count = np.bincount(merchant_country, minlength=n_countries)
    country_first_merchant = np.concatenate([[0], np.cumsum(country_merchant_count)[:-1]])
    # Likewise every category exists, however small the population.
    n_categories = len(MERCHANT_CATEGORIES)
    merchant_category = np.concatenate(
        [
            np.arange(n_categories),
            rng.choice(n_categories, n_merchants - n_categories, p=_CATEGORY_WEIGHTS),
        ]
    )
    merchant_category = rng.permutation(merchant_category).astype(np.int8)
    # Most merchants are low risk; a few percent are compromised or complicit.
    merchant_risk = rng.beta(1.5, 12.0, n_merchants)
    risky = rng.random(n_merchants) < 0.03
    merchant_risk[risky] = rng.uniform(0.5, 1.0, int(risky.sum()))

    return _Population(
        customer_home=customer_home,
        customer_typical_spend=customer_typical_spend,
        customer_channel=customer_channel,
        band_first_customer=band_first,
        band_size=band_size,
        merchant_category=merchant_category,
        merchant_country=merchant_country,
        country_currency=np.array(
            [CURRENCIES.index(_COUNTRY_CURRENCY[c]) for c in COUNTRIES], dtype=np.int8
        ),
        merchant_risk=merchant_risk.astype(np.float32),
        country_first_merchant=country_first_merchant.astype(np.int64),
        country_merchant_count=country_merchant_count.astype(np.int64),
    )


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


def _choose_rows(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Boolean mask of ``k`` of ``n`` rows chosen uniformly without replacement.

    Draws whichever side is smaller, the chosen rows or the others, so that keeping 90 % of ten
    million rows costs a million draws rather than a permutation and a sort.
    """
    if 2 * k <= n:
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, k, replace=False, shuffle=False)] = True
    else:
        mask = np.ones(n, dtype=bool)
        mask[rng.choice(n, n - k, replace=False, shuffle=False)] = False
    return mask


def _empty_bad_rows() -> pl.DataFrame:
    return pl.DataFrame(schema={"row": pl.get_index_type(), "incident": pl.String})


def _day_start_us(day: datetime.date) -> int:
    start = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
    return (start - _UNIX_EPOCH) // datetime.timedelta(microseconds=1)


def _check_day(day: datetime.date) -> None:
    # A datetime is a date subclass; accepting one would silently key days by a timestamp.
    if not isinstance(day, datetime.date) or isinstance(day, datetime.datetime):
        raise TypeError(f"day must be a datetime.date, got {day!r}")


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
        self._population = _build_population(
            seed, n_customers=max(200, rows_per_day // 4), n_merchants=max(50, rows_per_day // 200)
        )
        delay_weights = np.exp(-np.arange(max_label_delay_days) / 6.0)  # most within two weeks
        self._delay_p = delay_weights / delay_weights.sum()
        # Chargebacks per transaction day are tiny (the fraud rows only); keeping the recent ones
        # lets consecutive chargebacks() calls reuse them instead of regenerating 30 days.
        self._chargeback_cache: OrderedDict[datetime.date, pl.DataFrame] = OrderedDict()
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
        if any(s.kind == "missing_partition" for s in active):
            empty = pl.DataFrame(schema=TRANSACTION_SCHEMA)
            return SimulatedDay(empty, _empty_bad_rows(), None)

        available_at = (
            datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
            + _AVAILABILITY_DELAY
        )
        for scenario in active:
            if scenario.kind == "late_partition":
                available_at += datetime.timedelta(hours=scenario.intensity)

        transactions = self._to_frame(clean)
        del clean
        transactions, bad_rows = self._apply_incidents(day, transactions, active)
        return SimulatedDay(transactions, bad_rows, available_at)

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

    def _drift_intensity(self, kind: str, day: datetime.date) -> float:
        """Combined intensity of the drifts of ``kind`` active on ``day``, capped at 1."""
        return min(
            1.0, sum(s.intensity for s in self.scenarios if s.kind == kind and s.active_on(day))
        )

    def _clean_day(self, day: datetime.date) -> _CleanDay:
        """Generate the day's true transactions: population behaviour plus any active drift."""
        pop = self._population
        ordinal = day.toordinal()
        rng = np.random.default_rng([self.seed, ordinal, _STREAM_CLEAN])
        covariate = self._drift_intensity("covariate_drift", day)
        concept = self._drift_intensity("concept_drift", day)

        noise = float(
            np.clip(rng.normal(0.0, _VOLUME_NOISE), -3 * _VOLUME_NOISE, 3 * _VOLUME_NOISE)
        )
        n = max(1, round(self.rows_per_day * _WEEKDAY_VOLUME[day.weekday()] * (1.0 + noise)))

        # Sorted timestamps without a sort: cumulative exponential spacings are sorted uniforms,
        # and the inverse CDF of the hour profile is monotone, so it keeps them sorted.
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

        # Customer: the integer part of u * bands picks the activity band, the fractional part
        # (again uniform) the customer inside it.
        position = rng.random(n)
        position *= _ACTIVITY_BANDS
        band = position.astype(np.int64)
        position -= band
        size = pop.band_size[band]
        position *= size
        customer = position.astype(np.int64)
        del position
        np.minimum(customer, size - 1, out=customer)
        customer += pop.band_first_customer[band]
        del band, size

        # Merchant: mostly in the customer's home country, else any other country uniformly.
        home = pop.customer_home[customer]
        foreign_share = (
            _BASE_FOREIGN_SHARE + (_DRIFTED_FOREIGN_SHARE - _BASE_FOREIGN_SHARE) * covariate
        )
        foreign = rng.random(n, dtype=np.float32) < foreign_share
        n_countries = len(COUNTRIES)
        other = rng.integers(1, n_countries, n, dtype=np.int8)
        country = np.where(foreign, (home + other) % n_countries, home)
        del other
        # Popularity within a country is skewed towards low positions (u**2).
        pick = rng.random(n, dtype=np.float32)
        pick *= pick
        count = pop.country_merchant_count[country]
        merchant = np.minimum((pick * count).astype(np.int64), count - 1)
        merchant += pop.country_first_merchant[country]
        del pick, count, country
        category = pop.merchant_category[merchant]

        # Channel: usually the customer's preferred one, else the population mix; ATM is implied
        # by a cash-withdrawal merchant.
        u_channel = rng.random(n, dtype=np.float32)
        # Rescaled, the draws above the preferred share pick from the population mix.
        mixed = (u_channel - _PREFERRED_CHANNEL_SHARE) / (1 - _PREFERRED_CHANNEL_SHARE)
        mixed_channel = (mixed >= _CHOSEN_CHANNEL_WEIGHTS[0]).astype(np.int8)
        mixed_channel += mixed >= _CHOSEN_CHANNEL_WEIGHTS[0] + _CHOSEN_CHANNEL_WEIGHTS[1]
        channel = np.where(
            u_channel < _PREFERRED_CHANNEL_SHARE, pop.customer_channel[customer], mixed_channel
        )
        del u_channel, mixed, mixed_channel
        is_atm = category == _CASH_WITHDRAWAL
        channel[is_atm] = _ATM

        # Amount: the customer's typical spend, scaled by category, with lognormal noise and an
        # occasional big purchase.
        log_noise = rng.standard_normal(n, dtype=np.float32)
        log_noise *= np.float32(0.5)
        big = rng.standard_exponential(n, dtype=np.float32)
        big -= np.float32(2.5)
        np.maximum(big, np.float32(0), out=big)
        log_noise += np.float32(0.4) * big
        del big
        typical = pop.customer_typical_spend[customer]
        amount = np.exp(log_noise, dtype=np.float64)
        del log_noise
        amount *= typical
        amount *= np.asarray(_CATEGORY_AMOUNT_FACTOR)[category]
        del category

        if covariate > 0:
            amount *= 1.0 + 2.0 * covariate
            drift_rng = np.random.default_rng([self.seed, ordinal, _STREAM_DRIFT])
            to_online = drift_rng.random(n, dtype=np.float32) < 0.5 * covariate
            to_online &= ~is_atm
            channel[to_online] = _ONLINE
            del to_online
        np.round(amount, 2, out=amount)
        np.clip(amount, MIN_AMOUNT, MAX_AMOUNT, out=amount)

        probability = fraud_probability(
            amount / typical,
            foreign=foreign,
            channel=channel,
            night=night,
            merchant_risk=pop.merchant_risk[merchant],
            concept_drift=concept,
        )
        del typical, night, foreign
        fraud = rng.random(n, dtype=np.float32) < probability
        del probability

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
        reason = np.where(channel == _ONLINE, online_reason, card_present_reason)

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

    def _apply_incidents(
        self, day: datetime.date, transactions: pl.DataFrame, active: list[Scenario]
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Corrupt the delivered batch and record which rows were corrupted.

        Incidents apply in a fixed order - volume_drop, null_spike, out_of_range, duplicates,
        schema_change - so that positions in the ground truth refer to the final batch and a
        duplicate is an exact copy of the row as delivered.
        """
        rng = np.random.default_rng([self.seed, day.toordinal(), _STREAM_INCIDENTS])
        bad: list[tuple[np.ndarray, str]] = []  # (sorted row positions, incident)

        def of_kind(kind: str) -> list[Scenario]:
            return [s for s in active if s.kind == kind]

        for scenario in of_kind("volume_drop"):
            n = transactions.height
            kept = _choose_rows(rng, n, round(n * (1 - scenario.intensity)))
            transactions = transactions.filter(pl.Series(kept))

        for scenario in of_kind("null_spike"):
            n = transactions.height
            rows = np.flatnonzero(_choose_rows(rng, n, round(n * scenario.intensity)))
            # Each corrupted row loses its category, its country, or both.
            which = rng.integers(0, 3, rows.size)
            null_category = np.zeros(n, dtype=bool)
            null_category[rows[which != 1]] = True
            null_country = np.zeros(n, dtype=bool)
            null_country[rows[which != 0]] = True
            transactions = transactions.with_columns(
                pl.when(pl.Series(null_category))
                .then(None)
                .otherwise(pl.col("merchant_category"))
                .alias("merchant_category"),
                pl.when(pl.Series(null_country))
                .then(None)
                .otherwise(pl.col("country"))
                .alias("country"),
            )
            bad.append((rows, "null_spike"))

        for scenario in of_kind("out_of_range"):
            n = transactions.height
            rows = np.flatnonzero(_choose_rows(rng, n, round(n * scenario.intensity)))
            amount = transactions["amount"].to_numpy().copy()
            # Half become refunds-as-negatives, half absurdly large amounts.
            negative = rng.random(rows.size) < 0.5
            too_large = np.round(MAX_AMOUNT * rng.uniform(1.01, 10.0, rows.size), 2)
            amount[rows] = np.where(negative, -np.abs(amount[rows]), too_large)
            transactions = transactions.with_columns(pl.Series("amount", amount))
            bad.append((rows, "out_of_range"))

        for scenario in of_kind("duplicates"):
            n = transactions.height
            copied = _choose_rows(rng, n, round(n * scenario.intensity))
            # Original row r moves down by the number of copies inserted before it.
            shift = np.concatenate([[0], np.cumsum(copied)[:-1]])
            new_position = np.arange(n) + shift
            bad = [
                (
                    np.sort(
                        np.concatenate([new_position[rows], new_position[rows[copied[rows]]] + 1])
                    ),
                    incident,
                )
                for rows, incident in bad
            ]
            transactions = transactions[np.repeat(np.arange(n), 1 + copied.astype(np.int64))]
            bad.append((new_position[copied] + 1, "duplicates"))

        if of_kind("schema_change"):
            transactions = transactions.with_columns(
                (pl.col("amount") * 100).round().cast(pl.Int64).alias("amount")
            ).rename({"amount": "amount_cents"})

        if not bad:
            return transactions, _empty_bad_rows()
        bad_rows = pl.concat(
            [
                pl.DataFrame({"row": pl.Series(rows, dtype=pl.get_index_type())}).with_columns(
                    incident=pl.lit(incident, dtype=pl.String)
                )
                for rows, incident in bad
            ]
        )
        # Overlapping scenarios of one kind may hit a row twice; it is still one bad row.
        return transactions, bad_rows.unique().sort("row", "incident")
