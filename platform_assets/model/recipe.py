"""How the fraud model is trained: its inputs, the time-ordered split, LightGBM's settings.

Plain functions on polars frames, free of Dagster, so the ``candidate_model`` asset, the tests and
``bench/training.py`` run the same recipe. Three choices shape it:

- **Time decides the split.** The oldest rows train, the next ones stop the boosting early and
  the latest ones are a holdout the candidate never sees; ``evaluation_report`` scores the
  candidate and the champion on that holdout. Once early stopping has picked the number of
  rounds, the model is boosted again for that many rounds on the training and validation rows
  together (``refit``): the most recent rows before the holdout are the ones most like tomorrow.
- **Deterministic.** A fixed seed, ``deterministic=True``, row-wise histograms and a fixed
  thread count give a byte-identical model from the same rows and config, in the run's own
  process. On a Dask cluster (``resources/dask_cluster.py``) only the quality is promised:
  data-parallel LightGBM builds its histograms from each worker's share of the rows, and which
  chunk lands on which worker is the scheduler's choice, so two fits of the same rows differ
  in their last digits and sometimes in the round early stopping picks; the integration tier
  holds a Dask model within 0.05 holdout PR-AUC and 0.02 ROC AUC of the local one on the same
  rows (``bench/scale.py`` compares them on 600,000 rows).
- **Imbalance without losing calibration.** Frauds are weighted up (``positive_weight``) so the
  trees see them, and the weight's effect on the odds (a shift of ``log(weight)`` in the raw
  score) is removed from the first tree afterwards; the booster then outputs probabilities
  that log loss and calibration can judge, and serving needs no extra step.

LightGBM is imported where a booster is trained: the code location imports this module, and
every run process, most of which train nothing, would pay for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from platform_assets.features.labelling import LABEL
from resources.feature_store import TIMESTAMP
from resources.sources.dataset import Dataset, declared_dataset

if TYPE_CHECKING:
    import lightgbm as lgb
    from distributed import Client

# A string the service carries for the on-demand view, and an absolute time that would let the
# model learn when it was trained rather than how fraud looks.
NOT_MODEL_INPUTS = ("home_country", "last_transaction_epoch_s")
# What the payment itself carries that the model reads as is, beside the service's features.
REQUEST_INPUTS = ("amount",)
# Features that mean nothing without an optional role of the dataset (null for every row).
ROLE_FEATURES = {"is_foreign": "country"}
LOG_LOSS = "calibrated_log_loss"


class Hyperparameters(BaseModel):
    """LightGBM's settings and the time split, each with its default and the reason for it.

    ``candidate_model``'s launchpad config (``TrainingConfig``) is this model as Dagster config.
    """

    learning_rate: float = Field(
        default=0.02,
        gt=0,
        description="Shrinkage per boosting round. 0.02 beat 0.05 on holdout PR-AUC at every "
        "training-set size tried (200k to 3M rows), for about twice the rounds.",
    )
    num_leaves: int = Field(default=31, ge=2, description="Leaves per tree.")
    min_child_samples: int = Field(
        default=50, ge=1, description="Fewest rows in a leaf; guards against memorising frauds."
    )
    feature_fraction: float = Field(
        default=0.9, gt=0, le=1, description="Share of features each tree may use."
    )
    lambda_l2: float = Field(default=1.0, ge=0, description="L2 regularisation of leaf values.")
    max_rounds: int = Field(
        default=1_000, ge=1, description="Most boosting rounds; early stopping ends sooner."
    )
    early_stopping_rounds: int = Field(
        default=30,
        ge=1,
        description="Stop when validation log loss has not improved for this many rounds.",
    )
    positive_weight: float = Field(
        default=0.0,
        ge=0,
        description="Weight of a fraud relative to a legitimate payment. 0: the square root of "
        "the training rows' legitimate-to-fraud ratio. Its effect on the odds is removed after "
        "training, so scores stay probabilities.",
    )
    monotone_increasing: list[str] | None = Field(
        default=None,
        description="Features whose increase may never lower the fraud score (domain knowledge, "
        "enforced by LightGBM's monotone constraints). Empty: the dataset declaration's "
        "monotone_increasing.",
    )
    refit: bool = Field(
        default=True,
        description="After early stopping has picked the rounds, boost that many rounds again "
        "on the training and validation rows together (the holdout stays unseen).",
    )
    excluded_features: list[str] = Field(
        default=[],
        description="Features to leave out (ablations); the rest of the feature service and the "
        "payment's amount are used.",
    )
    validation_fraction: float = Field(
        default=0.15,
        gt=0,
        lt=0.5,
        description="Share of rows, after the training rows in time, used for early stopping.",
    )
    holdout_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=0.5,
        description="Share of the latest rows kept out of training for the evaluation gate.",
    )
    seed: int = Field(default=7, description="Seed of every random choice LightGBM makes.")
    num_threads: int = Field(
        default=2,
        ge=1,
        description="LightGBM threads. Fixed on purpose: another count gives another model.",
    )


@dataclass(frozen=True)
class TimeSplit:
    """Rows to train on, rows to stop early on, and where the holdout begins."""

    train: pl.DataFrame
    validation: pl.DataFrame
    holdout_start: str  # ISO timestamp of the first holdout row

    def rows_trained_on(self, refit: bool) -> pl.DataFrame:
        """The rows the final model is boosted on: with a refit, validation's too."""
        return pl.concat([self.train, self.validation]) if refit else self.train


@dataclass(frozen=True)
class TrainedModel:
    """A booster ready to score, and how it was reached."""

    booster: lgb.Booster
    best_iteration: int
    trained_rows: int  # the rows of the final boosting: training, and validation with a refit
    positive_weight: float
    validation_log_loss: float
    boosting_seconds: float  # LightGBM's own work: binning the rows and boosting


def monotone_features(config: Hyperparameters, dataset: Dataset | None = None) -> list[str]:
    """The features constrained to raise the score: the config's, else the declaration's."""
    if config.monotone_increasing is not None:
        return config.monotone_increasing
    return (dataset or declared_dataset()).monotone_increasing


def model_features(
    config: Hyperparameters, service_features: list[str], dataset: Dataset | None = None
) -> list[str]:
    """The model's inputs: the service's numeric features in service order, then the amount.

    Minus the config's exclusions and the features of an optional role the dataset lacks.
    """
    dataset = dataset or declared_dataset()
    available = [*service_features, *REQUEST_INPUTS]
    for field, names in (
        ("excluded_features", config.excluded_features),
        ("monotone_increasing", monotone_features(config, dataset)),
    ):
        if unknown := sorted(set(names) - set(available)):
            raise ValueError(f"{field}: {unknown} are not features of the service")
    lacking = {name for name, role in ROLE_FEATURES.items() if not dataset.has(role)}
    excluded = {*NOT_MODEL_INPUTS, *config.excluded_features, *lacking}
    return [f for f in available if f not in excluded]


def time_split(
    frame: pl.DataFrame, validation_fraction: float, holdout_fraction: float
) -> TimeSplit:
    """Split rows sorted by time into training, validation and the holdout's start.

    Boundaries fall on timestamps, so rows of the same instant never straddle two parts.
    """
    times = frame[TIMESTAMP]
    if not times.is_sorted():
        raise ValueError(f"training rows must be sorted by {TIMESTAMP}")
    n = frame.height
    validation_start = times[int(n * (1 - holdout_fraction - validation_fraction))]
    holdout_start = times[int(n * (1 - holdout_fraction))]
    train = frame.filter(pl.col(TIMESTAMP) < validation_start)
    validation = frame.filter(pl.col(TIMESTAMP).is_between(validation_start, holdout_start, "left"))
    for name, part in (("training", train), ("validation", validation)):
        if part[LABEL].sum() == 0:
            raise ValueError(
                f"the {name} rows ({part.height}) hold no fraud; the training set is too small"
                " for this split (TrainingConfig.validation_fraction / holdout_fraction)"
            )
    return TimeSplit(train, validation, holdout_start.isoformat())


def holdout(frame: pl.DataFrame, holdout_start: str) -> pl.DataFrame:
    """The rows at or after ``holdout_start``: what the candidate never saw."""
    start = pl.lit(holdout_start).str.to_datetime(time_unit="us", time_zone="UTC")
    return frame.filter(pl.col(TIMESTAMP) >= start)


def feature_matrix(frame: pl.DataFrame, features: list[str]) -> np.ndarray:
    """float32 rows in ``features`` order; missing values become NaN, which LightGBM routes."""
    return np.ascontiguousarray(frame.select(features).cast(pl.Float32).to_numpy())


def lightgbm_params(config: Hyperparameters, features: list[str], positive_weight: float) -> dict:
    """LightGBM's parameters for ``config``, deterministic by construction."""
    return {
        "objective": "binary",
        # Early stopping uses calibrated_log_loss, not LightGBM's weighted log loss.
        "metric": "None",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "feature_fraction": config.feature_fraction,
        "lambda_l2": config.lambda_l2,
        "scale_pos_weight": positive_weight,
        "monotone_constraints": [int(f in monotone_features(config)) for f in features],
        # "advanced" broke the guarantee on our data (91 of 7,200 steps of the behavioural test
        # lowered the score, by up to 0.0105); "intermediate" keeps it.
        "monotone_constraints_method": "intermediate",
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbosity": -1,
    }


def default_positive_weight(labels: pl.Series) -> float:
    """sqrt(legitimate / fraud): a middle way between ignoring and fully balancing the classes."""
    frauds = int(labels.sum())
    return math.sqrt((labels.len() - frauds) / frauds)


def train(
    config: Hyperparameters,
    split: TimeSplit,
    features: list[str],
    cluster: Client | None = None,
) -> TrainedModel:
    """Boost on the training rows, stop on validation log loss, refit, calibrate.

    With ``config.refit`` the final model is boosted for the rounds early stopping chose on the
    training and validation rows together, with the same fraud weight. With a Dask ``cluster``
    the boosting is data-parallel on its workers (``dask_training.py``).
    """
    import lightgbm as lgb

    weight = config.positive_weight or default_positive_weight(split.train[LABEL])
    params = lightgbm_params(config, features, weight)
    started = time.perf_counter()
    if cluster is None:
        booster, best, validation_loss = _boost_in_process(params, config, split, features, weight)
    else:
        # Imported here: the Dask path's modules load only where a cluster trains.
        from platform_assets.model.dask_training import boost_on_dask

        booster, best, validation_loss = boost_on_dask(
            cluster, params, config, split, features, weight
        )
    boosting_seconds = time.perf_counter() - started
    rows = split.rows_trained_on(config.refit)
    model = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    remove_positive_weight(model, weight)
    return TrainedModel(
        booster=model,
        best_iteration=best,
        trained_rows=rows.height,
        positive_weight=weight,
        validation_log_loss=validation_loss,
        boosting_seconds=boosting_seconds,
    )


def _boost_in_process(
    params: dict, config: Hyperparameters, split: TimeSplit, features: list[str], weight: float
) -> tuple[lgb.Booster, int, float]:
    """The final booster, its best round and validation log loss, trained in this process."""
    import lightgbm as lgb

    train_set = _dataset(split.train, features)
    validation_x = feature_matrix(split.validation, features)
    validation_set = train_set.create_valid(validation_x, split.validation[LABEL].to_numpy())
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[validation_set],
        valid_names=["validation"],
        feval=calibrated_log_loss(weight),
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or config.max_rounds
    loss = booster.best_score["validation"][LOG_LOSS]
    if config.refit:
        booster = lgb.train(
            params, _dataset(split.rows_trained_on(True), features), num_boost_round=best
        )
    return booster, best, loss


def _dataset(rows: pl.DataFrame, features: list[str]) -> lgb.Dataset:
    import lightgbm as lgb

    return lgb.Dataset(
        feature_matrix(rows, features), rows[LABEL].to_numpy(), feature_name=features
    )


def calibrated_log_loss(weight: float) -> Callable:
    """Validation log loss of the scores once the positive weight's odds factor is removed.

    Early stopping on the weighted scores would stop as soon as they drift from the
    unweighted validation labels, long before the trees have learned anything.
    """

    def metric(scores: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
        return LOG_LOSS, calibrated_loss(scores, np.asarray(data.get_label()), weight), False

    return metric


def calibrated_loss(scores: np.ndarray, labels: np.ndarray, weight: float) -> float:
    """Log loss of the weighted model's ``scores`` once the weight's odds factor is removed."""
    probabilities = np.clip(scores / (scores + weight * (1 - scores)), 1e-15, 1 - 1e-15)
    losses = labels * np.log(probabilities) + (1 - labels) * np.log1p(-probabilities)
    return float(-losses.mean())


def remove_positive_weight(booster: lgb.Booster, weight: float) -> None:
    """Shift the raw score by -log(weight) by lowering every leaf of the first tree.

    Weighting frauds by w multiplies the odds the trees learn by w; each row lands in exactly one
    leaf of the first tree, so this turns the scores back into probabilities.
    """
    shift = math.log(weight)
    first_tree = booster.dump_model(num_iteration=1)["tree_info"][0]
    for leaf in range(first_tree["num_leaves"]):
        booster.set_leaf_output(0, leaf, booster.get_leaf_output(0, leaf) - shift)


def fraud_scores(booster: lgb.Booster, frame: pl.DataFrame) -> np.ndarray:
    """Fraud probabilities for ``frame``'s rows, with the features the booster was trained on."""
    return booster.predict(feature_matrix(frame, booster.feature_name()))  # type: ignore[return-value]
