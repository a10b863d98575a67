"""The Feast repository on a real store under tmp_path: point-in-time joins, TTLs, configs.

Feature rows are written by hand into a temporary lake, so every expected value is known: a
value written after a transaction must never reach that transaction's row.
"""

import datetime
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from platform_assets.features import engineering as fe
from platform_assets.features import merchant_risk as mr
from resources.feature_store import FEATURE_REPO, FeatureStoreResource, definitions_version

pytestmark = pytest.mark.asset_graph

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def customer_row(customer: int, when: str, txn_count_24h: int, amount_mean: float) -> dict:
    row = dict.fromkeys(fe.CUSTOMER_FEATURE_SCHEMA.names())
    return row | {
        "customer_id": customer,
        fe.TIMESTAMP: at(when),
        "txn_count_24h": txn_count_24h,
        "amount_mean_30d": amount_mean,
        "home_country": "US",
        "last_transaction_epoch_s": int(at(when).timestamp()),
    }


def merchant_row(merchant: int, when: str, rate: float) -> dict:
    row = dict.fromkeys(mr.MERCHANT_FEATURE_SCHEMA.names())
    return row | {"merchant_id": merchant, fe.TIMESTAMP: at(when), "merchant_chargeback_rate": rate}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FeatureStoreResource:
    root = tmp_path_factory.mktemp("feast")
    lake = root / "lake"
    customers = pl.DataFrame(
        [
            customer_row(1, "2026-01-05T10:00:00", 1, 10.0),
            customer_row(1, "2026-01-05T12:00:00", 2, 20.0),
            customer_row(1, "2026-01-20T09:00:00", 3, 30.0),  # written long after
            customer_row(2, "2025-11-01T09:00:00", 9, 90.0),  # older than the 30-day TTL
        ],
        schema=fe.CUSTOMER_FEATURE_SCHEMA,
    )
    merchants = pl.DataFrame(
        [merchant_row(7, "2026-01-05T00:00:00", 0.1), merchant_row(7, "2026-01-06T00:00:00", 0.5)],
        schema=mr.MERCHANT_FEATURE_SCHEMA,
    )
    for name, frame in (("customer_features", customers), ("merchant_features", merchants)):
        (lake / name).mkdir(parents=True)
        frame.write_parquet(lake / name / "hand-built.parquet")
    feature_store = FeatureStoreResource(lake_root=str(lake), state_dir=str(root / "state"))
    feature_store.apply()
    return feature_store


def entity(customer: int, when: str, amount: float = 40.0) -> dict:
    return {
        "customer_id": customer,
        "merchant_id": 7,
        "amount": amount,
        "country": "FR",
        "transaction_epoch_s": int(at(when).timestamp()),
        fe.TIMESTAMP: at(when),
    }


@pytest.fixture(params=["feast", "polars"])
def join(store, request) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """One engine's point-in-time join: a test that takes it runs once per engine, on that one.

    The engine is bound here, so a test cannot fall back to the resource's default by leaving
    it out: ``polars`` is what training_set and the skew check use, ``feast`` is Feast's own.
    """
    engine = request.param
    return lambda entities: store.historical_features(entities, engine)


def asked(*rows: dict) -> pl.DataFrame:
    """Entity rows as retrieval takes them, numbered in the order asked."""
    return (
        pl.DataFrame(list(rows))
        .with_row_index("asked")
        .with_columns(pl.col(fe.TIMESTAMP).cast(pl.Datetime("us", "UTC")))
    )


def test_a_value_written_after_the_transaction_never_reaches_its_row(join):
    rows = join(
        asked(
            entity(1, "2026-01-05T11:59:59"),  # between the first two rows
            entity(1, "2026-01-05T12:00:00"),  # exactly at the second row: it is known
            entity(1, "2026-01-19T23:00:00"),  # the third row is written a day later
            entity(1, "2026-01-05T09:00:00"),  # before any row
        )
    ).sort("asked")
    assert rows["txn_count_24h"].to_list() == [1, 2, 2, None]
    # Merchant rows are end-of-day snapshots: the 01-06 row is unknown until 01-06 00:00, and
    # by 01-19 it is past the view's 7-day TTL.
    assert rows["merchant_chargeback_rate"].to_list() == [0.1, 0.1, None, 0.1]
    # The on-demand view runs on the joined values and the request's own fields.
    assert rows["amount_to_customer_mean"].to_list() == [4.0, 2.0, 2.0, None]
    assert rows["is_foreign"].to_list() == [1, 1, 1, None]
    assert rows["hour_of_day"].to_list() == [11, 12, 23, 9]
    assert rows["seconds_since_last_transaction"][0] == 2 * 3600 - 1


def test_ttls_behave_as_configured(join):
    rows = join(
        asked(
            entity(2, "2025-11-30T09:00:00"),  # 29 days after customer 2's row: within 30 days
            entity(2, "2025-12-02T09:00:00"),  # 31 days after: expired
            entity(1, "2026-01-12T23:00:00"),  # merchant row from 01-06: within 7 days
            entity(1, "2026-01-13T00:00:00"),  # merchant row exactly 7 days old: still valid
            entity(1, "2026-01-13T00:00:01"),  # merchant row 7 days and a second old: expired
        )
    ).sort("asked")
    assert rows["txn_count_24h"].to_list() == [9, None, 2, 2, 2]
    assert rows["merchant_chargeback_rate"].to_list() == [None, None, 0.5, 0.5, None]


def test_both_engines_return_the_same_frame(store):
    asked = pl.DataFrame(
        [
            entity(c, f"2026-01-{d:02d}T{h:02d}:00:00")
            for c in (1, 2, 3)
            for d in (4, 5, 6, 19, 21)
            for h in (0, 11, 12)
        ]
    ).with_columns(pl.col(fe.TIMESTAMP).cast(pl.Datetime("us", "UTC")))
    feast, ours = (store.historical_features(asked, engine) for engine in ("feast", "polars"))
    assert ours.equals(feast)
    assert ours.columns == [*asked.columns, *store.feature_names()]


def test_the_service_lists_every_view_and_the_on_demand_features(store):
    names = store.feature_names()
    assert set(fe.CUSTOMER_FEATURE_SCHEMA.names()) - {"customer_id", fe.TIMESTAMP} <= set(names)
    assert set(mr.MERCHANT_FEATURE_SCHEMA.names()) - {"merchant_id", fe.TIMESTAMP} <= set(names)
    assert {"amount_to_customer_mean", "hour_of_day", "is_foreign"} <= set(names)


def test_reapplying_unchanged_definitions_changes_nothing(store):
    changes = store.apply()
    assert "Created" not in changes
    assert "Deleted" not in changes
    assert "Updated" not in changes


def test_the_production_configuration_parses(monkeypatch):
    monkeypatch.setenv("FLYWHEEL_FEAST_REGISTRY_URL", "postgresql+psycopg://feast@db/feast")
    monkeypatch.setenv("FLYWHEEL_REDIS_CONNECTION", "redis:6379,ssl=true")
    config = FeatureStoreResource(
        config_file="feature_store.prod.yaml", lake_root="/lake"
    ).repo_config()
    registry, online, offline = config.registry, config.online_store, config.offline_store
    assert registry is not None and online is not None and offline is not None
    assert registry.registry_type == "sql"
    assert registry.path == "postgresql+psycopg://feast@db/feast"
    assert online.type == "redis"
    assert online.connection_string == "redis:6379,ssl=true"
    assert offline.type == "duckdb"


def test_the_definitions_version_follows_every_definition_file(tmp_path: Path):
    copy = tmp_path / "feature_repo"
    copy.mkdir()
    for name in ("fraud_detection.py", "feature_store.yaml", ".feastignore"):
        (copy / name).write_bytes((FEATURE_REPO / name).read_bytes())
    before = definitions_version(copy)
    (copy / "README.md").write_text("prose is not a definition")
    assert definitions_version(copy) == before
    definitions = copy / "fraud_detection.py"
    definitions.write_text(definitions.read_text().replace("days=30", "days=29"))
    assert definitions_version(copy) != before


def test_the_feast_cli_plans_on_a_fresh_checkout(tmp_path: Path):
    """`feast -c feature_repo plan`, as the README says, before anything made .flywheel/data."""
    checkout = tmp_path / "checkout"
    shutil.copytree(
        FEATURE_REPO, checkout / "feature_repo", ignore=shutil.ignore_patterns("__pycache__")
    )
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("FLYWHEEL_LAKE_ROOT", "FLYWHEEL_DATA_DIR")
    }
    feast = Path(sys.executable).with_name("feast")
    result = subprocess.run(
        [str(feast), "-c", "feature_repo", "plan"],
        cwd=checkout,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Created feature service fraud_model_v1" in result.stdout
    assert (checkout / ".flywheel" / "data" / "feast" / "registry.db").is_file()
