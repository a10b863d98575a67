"""The training recipe's boosting on a Dask cluster (``lightgbm.dask``), data-parallel.

``recipe.train`` calls it when a cluster is configured (``resources/dask_cluster.py``); the
recipe's parameters, split, weighting and calibration are the same as in process. What differs
is said in ``recipe.py``'s docstring: no early stopping inside a distributed fit, and only the
model's quality, not its bytes, is promised.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from platform_assets.features.labelling import LABEL
from platform_assets.model.recipe import (
    Hyperparameters,
    TimeSplit,
    calibrated_loss,
    feature_matrix,
)

if TYPE_CHECKING:
    import lightgbm as lgb
    from distributed import Client


def boost_on_dask(
    cluster: Client,
    params: dict,
    config: Hyperparameters,
    split: TimeSplit,
    features: list[str],
    weight: float,
) -> tuple[lgb.Booster, int, float]:
    """The same boosting, data-parallel on the cluster's workers (``lightgbm.dask``).

    LightGBM's Dask interface has no early stopping (lightgbm-org/LightGBM#3712; a stopping
    callback hangs the workers, #6351), so the first fit boosts ``max_rounds`` rounds and the
    round early stopping would have chosen is found after it, on this process, from the
    validation loss after each round with the same patience. Each worker holds a contiguous
    share of the rows and uses its own threads (LightGBM's thread count follows the worker's).
    """
    first = _fit_on_dask(cluster, params, split.train, features, config.max_rounds)
    best, loss = _early_stopping_round(
        first, split.validation, features, weight, config.early_stopping_rounds
    )
    if not config.refit:
        return first, best, loss
    final = _fit_on_dask(cluster, params, split.rows_trained_on(True), features, best)
    return final, best, loss


def _fit_on_dask(
    cluster: Client, params: dict, rows: pl.DataFrame, features: list[str], rounds: int
) -> lgb.Booster:
    import dask.array as da
    from lightgbm.dask import DaskLGBMClassifier

    x, y = feature_matrix(rows, features), rows[LABEL].to_numpy()
    per_worker = math.ceil(len(x) / len(cluster.scheduler_info()["workers"]))
    distributed = {k: v for k, v in params.items() if k != "num_threads"}
    model = DaskLGBMClassifier(client=cluster, n_estimators=rounds, **distributed)
    # dask annotates ``chunks`` as a string only; a tuple of sizes is what it documents.
    model.fit(
        da.from_array(x, chunks=(per_worker, x.shape[1])),  # pyright: ignore[reportArgumentType]
        da.from_array(y, chunks=per_worker),  # pyright: ignore[reportArgumentType]
        feature_name=features,
    )
    return model.booster_


def _early_stopping_round(
    booster: lgb.Booster, rows: pl.DataFrame, features: list[str], weight: float, patience: int
) -> tuple[int, float]:
    """The round ``lgb.early_stopping(patience)`` stops at, and its validation log loss."""
    x, labels = feature_matrix(rows, features), rows[LABEL].to_numpy()
    raw = np.zeros(len(x))
    best, best_loss = 0, math.inf
    for round_ in range(booster.num_trees()):
        raw += np.asarray(
            booster.predict(x, start_iteration=round_, num_iteration=1, raw_score=True)
        )
        loss = calibrated_loss(1 / (1 + np.exp(-raw)), labels, weight)
        if loss < best_loss:
            best, best_loss = round_ + 1, loss
        elif round_ + 1 - best >= patience:
            break
    return best, best_loss
