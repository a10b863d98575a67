"""Unit tests of the training recipe: inputs, the time split, determinism and calibration."""

import datetime

import numpy as np
import polars as pl
import pytest

from platform_assets.model.recipe import (
    NOT_MODEL_INPUTS,
    Hyperparameters,
    holdout,
    model_features,
    monotone_features,
    remove_positive_weight,
    time_split,
    train,
)
from resources.sources.dataset import declared_dataset

pytestmark = pytest.mark.unit

FEATURES = ["amount_to_customer_mean", "is_foreign", "merchant_chargeback_rate", "txn_count_30d"]
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def payments(rows: int = 30_000, seed: int = 0) -> pl.DataFrame:
    """Time-ordered payments whose fraud odds rise with amount ratio, foreignness and merchant."""
    rng = np.random.default_rng(seed)
    ratio = rng.lognormal(0, 0.8, rows)
    foreign = (rng.random(rows) < 0.1).astype(float)
    merchant = rng.beta(1, 30, rows)
    logit = -5 + 1.5 * np.log(ratio).clip(0) + 1.5 * foreign + 20 * merchant
    return pl.DataFrame(
        {
            "event_timestamp": [START + datetime.timedelta(seconds=30 * n) for n in range(rows)],
            "amount_to_customer_mean": ratio,
            "is_foreign": foreign,
            "merchant_chargeback_rate": merchant,
            "txn_count_30d": rng.poisson(8, rows),
            "is_fraud": rng.random(rows) < 1 / (1 + np.exp(-logit)),
        }
    ).with_columns(pl.col("event_timestamp").dt.cast_time_unit("us"))


def test_model_inputs_are_the_services_numeric_features_and_the_amount_minus_exclusions():
    service = [*FEATURES, *NOT_MODEL_INPUTS]
    assert model_features(Hyperparameters(), service) == [*FEATURES, "amount"]
    ablation = Hyperparameters(excluded_features=["txn_count_30d", "amount"])
    assert model_features(ablation, service) == FEATURES[:3]


def test_a_dataset_without_a_country_gets_no_is_foreign_and_its_own_monotone_features():
    without_country = declared_dataset().model_copy(
        update={
            "columns": {r: c for r, c in declared_dataset().columns.items() if r != "country"},
            "monotone_increasing": ["merchant_chargeback_rate"],
        }
    )
    service = [*FEATURES, *NOT_MODEL_INPUTS]
    inputs = model_features(Hyperparameters(), service, without_country)
    assert "is_foreign" not in inputs
    assert monotone_features(Hyperparameters(), without_country) == ["merchant_chargeback_rate"]
    assert monotone_features(Hyperparameters(monotone_increasing=[]), without_country) == []


def test_a_refit_boosts_the_chosen_rounds_on_training_and_validation_rows():
    rows = payments(5_000)
    split = time_split(rows, 0.15, 0.2)
    config = Hyperparameters(monotone_increasing=[], min_child_samples=20)
    refit, early = (
        train(config.model_copy(update={"refit": refit}), split, FEATURES)
        for refit in (True, False)
    )
    assert refit.best_iteration == early.best_iteration == refit.booster.num_trees()
    assert (refit.trained_rows, early.trained_rows) == (
        split.train.height + split.validation.height,
        split.train.height,
    )
    # Boosted on other rows: another model, never the one early stopping saw.
    assert refit.booster.model_to_string() != early.booster.model_to_string()


@pytest.mark.parametrize("field", ["excluded_features", "monotone_increasing"])
def test_an_unknown_feature_name_is_refused_naming_the_field(field):
    config = Hyperparameters(**{field: ["amount_in_gold"]})
    with pytest.raises(ValueError, match=rf"{field}: \['amount_in_gold'\] are not features"):
        model_features(config, FEATURES)


def test_time_split_orders_training_validation_and_holdout_without_overlap():
    rows = payments(1_000)
    # Two payments at the same instant on the validation boundary stay together.
    rows = rows.with_columns(
        pl.when(pl.int_range(pl.len()) == 650)
        .then(pl.col("event_timestamp").shift(1))
        .otherwise(pl.col("event_timestamp"))
        .alias("event_timestamp")
    )
    split = time_split(rows, validation_fraction=0.15, holdout_fraction=0.2)
    held = holdout(rows, split.holdout_start)

    assert split.train["event_timestamp"].max() < split.validation["event_timestamp"].min()
    assert split.validation["event_timestamp"].max() < held["event_timestamp"].min()
    assert split.train.height + split.validation.height + held.height == rows.height
    assert (split.train.height, split.validation.height, held.height) == (649, 151, 200)


def test_time_split_refuses_unsorted_rows_and_a_part_without_fraud():
    rows = payments(1_000)
    with pytest.raises(ValueError, match="sorted by event_timestamp"):
        time_split(rows.reverse(), 0.15, 0.2)
    no_fraud_late = rows.with_columns(is_fraud=pl.col("is_fraud") & (pl.int_range(pl.len()) < 600))
    with pytest.raises(ValueError, match="validation rows .* hold no fraud"):
        time_split(no_fraud_late, 0.15, 0.2)


def test_training_is_deterministic_and_the_seed_matters():
    rows = payments()
    split = time_split(rows, 0.15, 0.2)
    config = Hyperparameters(monotone_increasing=FEATURES[:3], min_child_samples=20)
    first, again = (train(config, split, FEATURES).booster.model_to_string() for _ in range(2))
    reseeded = config.model_copy(update={"seed": 8})
    assert first == again
    assert train(reseeded, split, FEATURES).booster.model_to_string() != first


@pytest.mark.parametrize("weight", [1.0, 25.0, 0.0])
def test_weighted_frauds_still_score_as_probabilities(weight):
    """Whatever the fraud weight, the mean score on later rows stays near the fraud rate."""
    rows = payments(60_000)
    split = time_split(rows, 0.15, 0.2)
    config = Hyperparameters(monotone_increasing=FEATURES[:3], positive_weight=weight)
    model = train(config, split, FEATURES)
    later = holdout(rows, split.holdout_start)
    scores = model.booster.predict(later.select(FEATURES).to_numpy())
    rate = later["is_fraud"].mean()
    assert isinstance(rate, float)
    assert 0.75 < scores.mean() / rate < 1.33, (scores.mean(), rate)


def test_removing_the_positive_weight_shifts_every_raw_score_by_its_log():
    rows = payments(5_000)
    split = time_split(rows, 0.15, 0.2)
    config = Hyperparameters(monotone_increasing=[], positive_weight=1.0, max_rounds=20)
    booster = train(config, split, FEATURES).booster
    x = rows.select(FEATURES).to_numpy()
    before = booster.predict(x, raw_score=True)
    remove_positive_weight(booster, 9.0)
    assert np.allclose(booster.predict(x, raw_score=True), before - np.log(9.0))
