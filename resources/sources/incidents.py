"""Incidents and drifts the simulated source can be told to suffer, and how a batch suffers them.

Every check and monitor downstream must be exercised against a known ground truth, so an
incident does more than corrupt a batch: it records exactly which delivered rows it corrupted.
Incidents draw from their own random stream, handed in by the simulator, so switching one on
never changes the clean part of a day. The drifts are not applied here: they change how the
clean day itself is generated, which is the simulator's business.
"""

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from resources.sources.schema import MAX_AMOUNT

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

# Row positions in the current batch (sorted) and the incident that corrupted them.
_BadRows = list[tuple[np.ndarray, str]]


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


def apply_incidents(
    rng: np.random.Generator, transactions: pl.DataFrame, active: Sequence[Scenario]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Corrupt the delivered batch and record which rows were corrupted.

    Incidents apply in a fixed order - volume_drop, null_spike, out_of_range, duplicates,
    schema_change - so that positions in the ground truth refer to the final batch and a
    duplicate is an exact copy of the row as delivered. That order is also the order in which
    ``rng`` is consumed, which keeps a day's incidents deterministic.

    Args:
        rng: The day's incident stream.
        transactions: The clean batch, in the contract schema.
        active: The scenarios active on the day; kinds other than the batch incidents are ignored.

    Returns:
        The corrupted batch, and its bad rows as described by ``SimulatedDay.injected_bad_rows``.
    """
    bad: _BadRows = []
    for scenario in _of_kind(active, "volume_drop"):
        transactions = _drop_volume(rng, transactions, scenario.intensity)
    for scenario in _of_kind(active, "null_spike"):
        transactions, rows = _spike_nulls(rng, transactions, scenario.intensity)
        bad.append((rows, "null_spike"))
    for scenario in _of_kind(active, "out_of_range"):
        transactions, rows = _break_amounts(rng, transactions, scenario.intensity)
        bad.append((rows, "out_of_range"))
    for scenario in _of_kind(active, "duplicates"):
        transactions, bad = _duplicate_rows(rng, transactions, scenario.intensity, bad)
    if _of_kind(active, "schema_change"):
        transactions = _amount_in_cents(transactions)
    return transactions, _bad_rows_frame(bad)


def delivery_delay(active: Sequence[Scenario]) -> datetime.timedelta | None:
    """How late the day's partition lands, beyond the source's usual delay.

    Args:
        active: The scenarios active on the day.

    Returns:
        None if a missing_partition is active (the partition never lands), else the sum of the
        active late_partition delays (zero without any).
    """
    if _of_kind(active, "missing_partition"):
        return None
    delay = datetime.timedelta()
    for scenario in _of_kind(active, "late_partition"):
        delay += datetime.timedelta(hours=scenario.intensity)
    return delay


def empty_bad_rows() -> pl.DataFrame:
    """The ground truth of a batch without corrupted rows.

    Returns:
        An empty frame with the columns of ``SimulatedDay.injected_bad_rows``.
    """
    return pl.DataFrame(schema={"row": pl.get_index_type(), "incident": pl.String})


def _of_kind(active: Sequence[Scenario], kind: str) -> list[Scenario]:
    return [s for s in active if s.kind == kind]


def _drop_volume(
    rng: np.random.Generator, transactions: pl.DataFrame, share: float
) -> pl.DataFrame:
    """Lose ``share`` of the rows; the survivors keep their order."""
    n = transactions.height
    kept = _choose_rows(rng, n, round(n * (1 - share)))
    return transactions.filter(pl.Series(kept))


def _spike_nulls(
    rng: np.random.Generator, transactions: pl.DataFrame, share: float
) -> tuple[pl.DataFrame, np.ndarray]:
    """Null the category, the country or both on ``share`` of the rows; return those rows."""
    n = transactions.height
    rows = np.flatnonzero(_choose_rows(rng, n, round(n * share)))
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
        pl.when(pl.Series(null_country)).then(None).otherwise(pl.col("country")).alias("country"),
    )
    return transactions, rows


def _break_amounts(
    rng: np.random.Generator, transactions: pl.DataFrame, share: float
) -> tuple[pl.DataFrame, np.ndarray]:
    """Put ``share`` of the amounts out of range; return those rows."""
    n = transactions.height
    rows = np.flatnonzero(_choose_rows(rng, n, round(n * share)))
    amount = transactions["amount"].to_numpy().copy()
    # Half become refunds-as-negatives, half absurdly large amounts.
    negative = rng.random(rows.size) < 0.5
    too_large = np.round(MAX_AMOUNT * rng.uniform(1.01, 10.0, rows.size), 2)
    amount[rows] = np.where(negative, -np.abs(amount[rows]), too_large)
    return transactions.with_columns(pl.Series("amount", amount)), rows


def _duplicate_rows(
    rng: np.random.Generator, transactions: pl.DataFrame, share: float, bad: _BadRows
) -> tuple[pl.DataFrame, _BadRows]:
    """Deliver ``share`` of the rows twice, each copy right after its original.

    The earlier bad rows are moved to their new positions, and a copy of a bad row is bad too.
    """
    n = transactions.height
    copied = _choose_rows(rng, n, round(n * share))
    # Original row r moves down by the number of copies inserted before it.
    shift = np.concatenate([[0], np.cumsum(copied)[:-1]])
    new_position = np.arange(n) + shift
    bad = [
        (
            np.sort(np.concatenate([new_position[rows], new_position[rows[copied[rows]]] + 1])),
            incident,
        )
        for rows, incident in bad
    ]
    transactions = transactions[np.repeat(np.arange(n), 1 + copied.astype(np.int64))]
    bad.append((new_position[copied] + 1, "duplicates"))
    return transactions, bad


def _amount_in_cents(transactions: pl.DataFrame) -> pl.DataFrame:
    """The schema change: ``amount`` becomes an integer ``amount_cents``."""
    return transactions.with_columns(
        (pl.col("amount") * 100).round().cast(pl.Int64).alias("amount")
    ).rename({"amount": "amount_cents"})


def _bad_rows_frame(bad: _BadRows) -> pl.DataFrame:
    """The ground-truth frame of ``bad``: one row per (position, incident), sorted."""
    if not bad:
        return empty_bad_rows()
    bad_rows = pl.concat(
        [
            pl.DataFrame({"row": pl.Series(rows, dtype=pl.get_index_type())}).with_columns(
                incident=pl.lit(incident, dtype=pl.String)
            )
            for rows, incident in bad
        ]
    )
    # Overlapping scenarios of one kind may hit a row twice; it is still one bad row.
    return bad_rows.unique().sort("row", "incident")


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
