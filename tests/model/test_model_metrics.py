"""Unit tests of the evaluation suite and the gate's rules, on synthetic holdouts.

Scores come from a latent risk plus noise, so "better" means less noise: the tests can shape a
candidate that is better overall yet worse on one slice or one metric, which real training
cannot produce on demand.
"""

import numpy as np
import polars as pl
import pytest
from dagster import MarkdownMetadataValue

from platform_assets.model.evaluation_report import EvaluationConfig, links, verdict_table
from platform_assets.model.gate import (
    DEFAULT_CRITICAL_RULES,
    GateRules,
    MetricRule,
    Verdict,
    gate,
    relative_rule,
)
from platform_assets.model.suite import calibration_error, evaluate, operating_point, slice_masks
from resources.model_registry import ModelRegistry

pytestmark = pytest.mark.unit

ROWS = 40_000


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


@pytest.fixture(scope="module")
def holdout() -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Rows with slice columns, labels drawn from a latent risk, and that risk."""
    rng = np.random.default_rng(0)
    risk = rng.normal(size=ROWS)
    labels = (rng.random(ROWS) < sigmoid(-4.5 + 1.5 * risk)).astype(np.int8)
    rows = pl.DataFrame(
        {
            "channel": rng.choice(["pos", "online", "contactless"], ROWS),
            "country": rng.choice(["US", "FR", "MX"], ROWS, p=[0.6, 0.3, 0.1]),
            "amount": rng.lognormal(3.5, 1.2, ROWS),
            "txn_count_30d": rng.choice([0, 3, 12], ROWS, p=[0.1, 0.45, 0.45]),
            "is_fraud": labels.astype(bool),
        }
    )
    return rows, labels, risk


def model(risk: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Calibrated-ish scores from the latent risk seen through noise of this size."""
    seen = risk + np.random.default_rng(seed).normal(scale=noise, size=risk.size)
    return sigmoid(-4.5 + 1.5 * seen / np.sqrt(1 + noise**2))


def judge(rows, labels, candidate, reference, config: GateRules | None = None, critical=None):
    config = config or GateRules()
    critical = critical or [MetricRule(**rule) for rule in DEFAULT_CRITICAL_RULES]
    masks = slice_masks(rows)
    frauds = {name: int(labels[mask].sum()) for name, mask in masks.items()}
    verdicts = gate(
        evaluate(labels, candidate, masks, config.operating_precision),
        evaluate(labels, reference, masks, config.operating_precision),
        frauds,
        config,
        critical,
    )
    return {v.check for v in verdicts if not v.passed}, verdicts


def test_slices_cover_channel_country_amount_band_and_new_customers(holdout):
    rows, _, _ = holdout
    masks = slice_masks(rows)
    assert {"channel:online", "country:MX", "customer:new", "customer:returning"} <= masks.keys()
    assert {name for name in masks if name.startswith("amount:")} == {
        "amount:<20",
        "amount:20-100",
        "amount:100-500",
        "amount:>=500",
    }
    # A band includes its lower edge.
    edges = slice_masks(rows.head(4).with_columns(amount=pl.Series([19.99, 20.0, 499.0, 500.0])))
    band_of_row = [
        next(name for name, mask in edges.items() if name.startswith("amount:") and mask[row])
        for row in range(4)
    ]
    assert band_of_row == ["amount:<20", "amount:20-100", "amount:100-500", "amount:>=500"]
    for prefix in ("channel:", "country:", "amount:", "customer:"):
        # Each family partitions the rows: every row in exactly one slice of it.
        family = [mask for name, mask in masks.items() if name.startswith(prefix)]
        assert (np.sum(family, axis=0) == 1).all(), prefix


def test_a_dataset_without_channel_or_country_has_no_slice_by_them(holdout):
    rows, _, _ = holdout
    unknown = pl.lit(None, dtype=pl.String)
    masks = slice_masks(rows.with_columns(channel=unknown, country=unknown))
    assert {name.split(":")[0] for name in masks} == {"amount", "customer"}


def test_a_better_candidate_passes_every_rule(holdout):
    rows, labels, risk = holdout
    failed, verdicts = judge(rows, labels, model(risk, 0.3, 1), model(risk, 1.0, 2))
    assert failed == set()
    assert any(v.check.startswith("pr_auc [") for v in verdicts)


def test_a_candidate_better_overall_but_worse_on_one_slice_is_blocked(holdout):
    rows, labels, risk = holdout
    champion = model(risk, 1.0, 2)
    candidate = model(risk, 0.3, 1)
    mexico = (rows["country"] == "MX").to_numpy()
    candidate[mexico] = model(risk, 3.0, 3)[mexico]  # it lost the signal in one country

    failed, verdicts = judge(rows, labels, candidate, champion)

    assert failed == {"pr_auc [country:MX]"}
    overall = {v.check: v for v in verdicts}["pr_auc"]
    assert overall.candidate > overall.reference


def test_a_candidate_better_ranked_but_miscalibrated_is_blocked_on_log_loss(holdout):
    rows, labels, risk = holdout
    ranked = model(risk, 0.3, 1)
    overconfident = sigmoid(3 * np.log(ranked / (1 - ranked)) + 8)  # same order, wrong odds

    failed, _ = judge(rows, labels, overconfident, model(risk, 1.0, 2))

    assert failed == {"log_loss"}


def test_an_unchanged_model_is_not_released(holdout):
    rows, labels, risk = holdout
    same = model(risk, 0.5, 1)
    failed, _ = judge(rows, labels, same, same.copy())
    assert failed == {"pr_auc gain"}


def test_the_first_model_is_held_to_the_baseline_and_the_floors(holdout):
    rows, labels, risk = holdout
    baseline = np.full(ROWS, labels.mean())
    weak = model(risk, 1.2, 5)

    failed, verdicts = judge(rows, labels, weak, baseline, GateRules(floors={"roc_auc": 0.75}))
    assert failed == {"roc_auc floor"}  # it beats predicting the fraud rate, not the floor
    reference = {v.check: v.reference for v in verdicts}
    assert reference["roc_auc"] == pytest.approx(0.5)
    assert reference["pr_auc"] == pytest.approx(labels.mean())

    failed, _ = judge(rows, labels, model(risk, 0.3, 1), baseline)
    assert failed == set()


def test_slices_with_too_few_frauds_are_reported_but_not_gated(holdout):
    rows, labels, risk = holdout
    config = GateRules(min_slice_frauds=10_000)
    failed, verdicts = judge(rows, labels, model(risk, 0.3, 1), model(risk, 1.0, 2), config)
    assert not [v for v in verdicts if v.check.startswith("pr_auc [")]
    assert failed == set()


def test_rule_tolerances_are_configurable(holdout):
    rows, labels, risk = holdout
    slightly_worse, champion = model(risk, 1.05, 2), model(risk, 1.0, 2)
    strict, _ = judge(rows, labels, slightly_worse, champion)
    assert "roc_auc" in strict
    tolerant = [MetricRule(metric="roc_auc", must="not_drop", tolerance=0.05)]
    assert "roc_auc" not in judge(rows, labels, slightly_worse, champion, critical=tolerant)[0]


def test_verdict_table_names_the_failed_rule_and_fills_in_the_reference():
    table = verdict_table(
        [
            Verdict("log_loss", 0.04, 0.05, "≤ reference", False),
            Verdict("pr_auc [channel:online]", 0.10432, 0.09, "≥ reference − 0.02", True),
            Verdict("roc_auc floor", None, 0.81234, "≥ 0.75", True),
        ],
        "champion v3",
    )
    # Three columns, the verdict next to the metric: the overview has room for no more.
    assert [c.name for c in table.schema.columns] == ["metric", "verdict", "candidate"]
    assert "champion v3" in str(table.schema.columns[2].description)
    # Wrapped, the cell breaks only before an operator: "0.0900 / ≥ 0.1043 / − 0.02".
    nbsp = "\N{NO-BREAK SPACE}"
    assert [r.data for r in table.records] == [
        {"metric": "log_loss", "verdict": "FAIL", "candidate": f"0.0500 ≤{nbsp}0.0400"},
        {
            "metric": "pr_auc [channel:online]",
            "verdict": "pass",
            "candidate": f"0.0900 ≥{nbsp}0.1043 −{nbsp}0.02",
        },
        {"metric": "roc_auc floor", "verdict": "pass", "candidate": f"0.8123 ≥{nbsp}0.75"},
    ]


def test_links_are_markdown_that_opens_the_run_the_version_and_each_file_in_mlflow():
    registry = ModelRegistry(tracking_uri="https://mlflow.example.com")
    run = "https://mlflow.example.com/#/experiments/3/runs/abc123"
    candidate = {"experiment_id": "3", "run_id": "abc123", "version": "7"}
    folder = "/lake/reports/evaluation/fraud_model-v7"

    metadata = links(registry, candidate, [f"{folder}/roc.png", f"{folder}/report.html"])

    # Markdown shows a short name that wraps; a url or path value would show the whole address.
    assert {key: type(value) for key, value in metadata.items()} == {
        "mlflow_run": MarkdownMetadataValue,
        "model_version": MarkdownMetadataValue,
        "reports": MarkdownMetadataValue,
    }
    assert metadata["mlflow_run"].value == f"[abc123]({run})"
    assert metadata["model_version"].value == (
        "[fraud_model v7](https://mlflow.example.com/#/models/fraud_model/versions/7)"
    )
    assert metadata["reports"].value == (
        f"[roc.png]({run}/artifacts/evaluation/roc.png)"
        f" · [report.html]({run}/artifacts/evaluation/report.html)"
    )


def test_rules_read_without_a_zero_margin():
    assert relative_rule("≤", "+", 0.0) == "≤ reference"
    assert relative_rule("≥", "−", 0.02) == "≥ reference − 0.02"


def test_operating_point_and_calibration_error():
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    recall, threshold = operating_point(labels, scores, precision=0.75)
    assert (recall, threshold) == (1.0, 0.4)  # from 0.4 up: 4 frauds of 5 alerts
    assert operating_point(labels, scores, precision=1.0) == (0.75, 0.6)
    assert operating_point(np.array([0, 1]), np.array([0.9, 0.1]), 0.99) == (0.0, 1.0)

    rng = np.random.default_rng(0)
    truth = rng.random(100_000) * 0.2
    drawn = (rng.random(truth.size) < truth).astype(int)
    assert calibration_error(drawn, truth) < 0.005
    assert calibration_error(drawn, truth * 3) > 0.1


def test_a_rule_or_floor_on_an_unknown_metric_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"floors: \['f1'\] are not metrics of the suite"):
        GateRules(floors={"f1": 0.5})
    with pytest.raises(ValueError, match="metric"):
        MetricRule(metric="f1", must="not_drop")  # type: ignore[arg-type]
    # The launchpad's config is the same model: it refuses the same input.
    with pytest.raises(ValueError, match=r"floors: \['f1'\] are not metrics of the suite"):
        EvaluationConfig(floors={"f1": 0.5})
    with pytest.raises(ValueError, match="metric"):
        EvaluationConfig(critical=[{"metric": "f1", "must": "not_drop"}])  # type: ignore[list-item]
