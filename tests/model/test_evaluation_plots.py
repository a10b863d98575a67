"""Unit tests of the evaluation plots: what each line says, read from the drawn figures.

The holdout mimics the first model's evaluation: an informative candidate against the baseline,
which gives every payment the training fraud rate (not quite the holdout's).
"""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from platform_assets.model.artifacts import CURVE_AXES, curve, curve_figure

pytestmark = pytest.mark.unit

ROWS = 20_000
TRAIN_FRAUD_RATE = 0.012
# Matplotlib's ways of drawing no marker.
INVISIBLE = {None, "None", "none", "", " "}


@pytest.fixture(scope="module")
def holdout() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels at a ~1 % fraud rate, and the candidate's and the baseline's scores."""
    rng = np.random.default_rng(0)
    risk = rng.normal(size=ROWS)
    labels = (rng.random(ROWS) < 1 / (1 + np.exp(4.5 - 1.5 * risk))).astype(np.int8)
    candidate = 1 / (1 + np.exp(4.5 - 1.5 * (risk + rng.normal(scale=0.5, size=ROWS))))
    return labels, {"candidate": candidate, "baseline": np.full(ROWS, TRAIN_FRAUD_RATE)}


@pytest.fixture
def drawn(holdout) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, str]]]:
    """Each plot's lines by label: x, y and marker."""
    labels, scores = holdout
    lines = {}
    for kind in CURVE_AXES:
        figure = curve_figure(kind, labels, scores)
        (plot,) = figure.axes
        lines[kind] = {
            line.get_label(): (line.get_xdata(), line.get_ydata(), line.get_marker())
            for line in plot.get_lines()
        }
        plt.close(figure)
    return lines


def test_a_constant_score_precision_recall_is_flat_at_the_fraud_rate(holdout):
    labels, scores = holdout
    recall, precision = curve("precision_recall", labels, scores["baseline"])
    assert recall.min() == 0 and recall.max() == 1
    np.testing.assert_allclose(precision, labels.mean())


def test_a_model_precision_recall_ends_at_the_precision_of_its_top_scores(holdout):
    labels, scores = holdout
    recall, precision = curve("precision_recall", labels, scores["candidate"])
    assert recall[0] == 1 and recall[-1] == 0
    # Not the perfect precision sklearn closes the curve with, which no threshold reached.
    top = scores["candidate"] == scores["candidate"].max()
    assert precision[-1] == labels[top].mean()


def test_every_model_is_visible_on_every_plot(drawn):
    for kind, lines in drawn.items():
        for model in ("candidate", "baseline"):
            x, _, marker = lines[model]
            assert x.size > 1 or marker not in INVISIBLE, (kind, model)


def test_the_baseline_is_a_visible_point_on_the_calibration_plot(holdout, drawn):
    labels, _ = holdout
    x, y, marker = drawn["calibration"]["baseline"]
    np.testing.assert_allclose(x, [TRAIN_FRAUD_RATE])
    np.testing.assert_allclose(y, [labels.mean()])
    assert marker not in INVISIBLE


def test_the_precision_recall_plot_draws_the_baseline_on_the_no_skill_line(holdout, drawn):
    labels, _ = holdout
    lines = drawn["precision_recall"]
    (no_skill,) = [label for label in lines if label.startswith("no skill")]
    np.testing.assert_allclose(lines[no_skill][1], labels.mean())
    np.testing.assert_allclose(lines["baseline"][1], labels.mean())
