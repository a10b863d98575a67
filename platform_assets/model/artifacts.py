"""The pictures a person looks at before trusting a gate verdict.

ROC, precision-recall and calibration curves of the candidate against the champion (or the
baseline), the candidate's feature importance, and Evidently's classification report with the
champion's predictions as reference. Matplotlib and Evidently are imported inside the functions:
importing them costs seconds that ``dagster dev`` would pay on every code reload.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import polars as pl

from platform_assets.features.labelling import LABEL
from platform_assets.model.suite import operating_point

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCORE = "fraud_score"
# A line of a thousand points looks the same as one of every threshold and draws in no time.
CURVE_POINTS = 1_000


CURVE_AXES = {
    "roc": ("false positive rate", "true positive rate"),
    "precision_recall": ("recall", "precision"),
    "calibration": ("mean predicted probability", "observed fraud rate"),
}


def curve(kind: str, labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The x and y points of one model's ROC, precision-recall or calibration curve."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    if kind == "roc":
        false_positives, true_positives, _ = roc_curve(labels, scores)
        x, y = false_positives, true_positives
    elif kind == "precision_recall":
        precision, recall, _ = precision_recall_curve(labels, scores)
        # sklearn ends the curve at (recall 0, precision 1), which no threshold reaches: drawn, it
        # turns a constant score's flat line at the fraud rate into a diagonal that looks skilled.
        # The top threshold's precision held down to recall 0 is the step average precision sums.
        precision[-1] = precision[-2]
        x, y = recall, precision
    else:
        observed, predicted = calibration_curve(labels, scores, n_bins=10, strategy="quantile")
        x, y = predicted, observed
    kept = np.unique(np.linspace(0, x.size - 1, min(x.size, CURVE_POINTS)).astype(int))
    return x[kept], y[kept]


def curve_figure(kind: str, labels: np.ndarray, scores: dict[str, np.ndarray]) -> "Figure":
    """One plot of ``kind`` with a line per model and the line they are read against.

    Returned unsaved, so the tests read the lines drawn rather than pixels.
    """
    x_label, y_label = CURVE_AXES[kind]
    figure, plot = _pyplot().subplots(figsize=(5, 4), dpi=100)
    # Markers on calibration: a constant score's curve is one point, invisible as a line.
    marker = "o" if kind == "calibration" else None
    for model, model_scores in scores.items():
        plot.plot(*curve(kind, labels, model_scores), label=model, marker=marker, markersize=4)
    x, y, name = _reference_line(kind, labels, scores)
    plot.plot(x, y, linestyle=":", color="grey", label=name)
    plot.set_xlabel(x_label)
    plot.set_ylabel(y_label)
    plot.set_title(kind.replace("_", "-"))
    plot.legend()
    return figure


def _reference_line(
    kind: str, labels: np.ndarray, scores: dict[str, np.ndarray]
) -> tuple[list[float], list[float], str]:
    """The line every model is read against: no skill, or perfect calibration.

    Without skill, precision is the fraud rate at every recall: a height the reader of a
    precision-recall plot would otherwise have to know.
    """
    if kind == "roc":
        return [0, 1], [0, 1], "no skill"
    if kind == "precision_recall":
        rate = float(labels.mean())
        return [0, 1], [rate, rate], f"no skill (fraud rate {rate:.2%})"
    top = max(float(s.max()) for s in scores.values())
    return [0, top], [0, top], "perfect"


def write_curves(folder: Path, labels: np.ndarray, scores: dict[str, np.ndarray]) -> list[Path]:
    """ROC, precision-recall and calibration plots, one line per model, as PNG files."""
    return [
        _save(curve_figure(kind, labels, scores), folder / f"{kind}.png") for kind in CURVE_AXES
    ]


def write_feature_importance(folder: Path, booster: lgb.Booster) -> Path:
    """The candidate's total split gain per feature, largest first, as a PNG bar chart."""
    plt = _pyplot()
    gains = booster.feature_importance(importance_type="gain")
    order = np.argsort(gains)
    names = np.array(booster.feature_name())[order]
    figure, plot = plt.subplots(figsize=(6, 0.3 * len(names) + 1), dpi=100)
    plot.barh(names, gains[order])
    plot.set_xlabel("total gain")
    plot.set_title("feature importance (candidate)")
    return _save(figure, folder / "feature_importance.png")


def _pyplot():
    """Matplotlib's pyplot on the file-only backend (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` and free it."""
    figure.tight_layout()
    figure.savefig(path)
    _pyplot().close(figure)
    return path


def write_classification_report(
    folder: Path,
    labels: np.ndarray,
    candidate: np.ndarray,
    reference: np.ndarray | None,
    threshold: float,
    rows: int,
    seed: int = 0,
) -> Path:
    """Evidently's classification report: the candidate as current, the champion as reference.

    Both sides are the same holdout rows (a sample of ``rows``), so every difference in the
    report is the models'.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    picked = np.random.default_rng(seed).permutation(labels.size)[:rows]
    picked.sort()
    definition = DataDefinition(
        classification=[BinaryClassification(target=LABEL, prediction_probas=SCORE)],
    )

    def dataset(scores: np.ndarray) -> Dataset:
        frame = pl.DataFrame({LABEL: labels[picked], SCORE: scores[picked]})
        return Dataset.from_pandas(frame.to_pandas(), data_definition=definition)

    snapshot = Report([ClassificationPreset(probas_threshold=threshold)]).run(
        current_data=dataset(candidate),
        reference_data=None if reference is None else dataset(reference),
    )
    path = folder / "classification_report.html"
    snapshot.save_html(str(path))
    return path


def write_evaluation_artifacts(
    folder: Path,
    labels: np.ndarray,
    scores: dict[str, np.ndarray],
    booster: lgb.Booster,
    reference: str | None,
    operating_precision: float,
    report_rows: int,
) -> list[Path]:
    """Every picture of one evaluation, written into ``folder``.

    Args:
        folder: Where the files go (created if needed).
        labels: The holdout's labels.
        scores: Each model's holdout scores; ``candidate`` and the reference.
        booster: The candidate, for its feature importance.
        reference: The champion's key in ``scores``; None when the reference is the baseline,
            which Evidently's report then leaves out.
        operating_precision: The precision the fraud team works at; Evidently's report judges
            the candidate at the threshold that reaches it.
        report_rows: Holdout rows sampled into Evidently's report.
    """
    folder.mkdir(parents=True, exist_ok=True)
    _, threshold = operating_point(labels, scores["candidate"], operating_precision)
    return [
        *write_curves(folder, labels, scores),
        write_feature_importance(folder, booster),
        write_classification_report(
            folder,
            labels,
            scores["candidate"],
            None if reference is None else scores[reference],
            threshold,
            report_rows,
        ),
    ]
