"""tools/margin_ci.py: the resampled confusion counts, scored against npmobilebert.metrics on label lists."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import margin_ci  # noqa: E402

from npmobilebert.metrics import classification_report  # noqa: E402

LABELS = ["negative", "neutral", "positive"]


def reference_macro_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    return classification_report([LABELS[k] for k in gold], [LABELS[k] for k in predicted], LABELS)["macro_f1"]


@pytest.mark.parametrize("seed", range(5))
def test_each_resample_scores_as_the_package_metrics_do(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    gold, predicted = rng.integers(3, size=n), rng.integers(3, size=n)
    predicted = np.where(rng.random(n) < 0.5, gold, predicted)   # better than chance, like a model
    resamples = rng.integers(n, size=(7, n))
    got = margin_ci.bootstrap_macro_f1(gold, predicted, 3, resamples)
    want = [reference_macro_f1(gold[rows], predicted[rows]) for rows in resamples]
    np.testing.assert_array_equal(got, want)


def test_a_class_missing_from_a_resample_scores_zero_as_in_the_package():
    gold = np.array([0, 1, 2, 2])
    predicted = np.array([0, 1, 2, 1])
    rows = np.array([[2, 3, 2, 3]])   # only gold class 2: classes 0 and 1 have no gold tweet
    want = reference_macro_f1(gold[rows[0]], predicted[rows[0]])
    np.testing.assert_array_equal(margin_ci.bootstrap_macro_f1(gold, predicted, 3, rows), [want])


def test_identical_predictions_give_a_zero_margin_and_interval():
    rng = np.random.default_rng(0)
    gold, predicted = rng.integers(3, size=200), rng.integers(3, size=200)
    r = margin_ci.margin_interval(gold, predicted, predicted, 3, 300, seed=0, target=5.0)
    assert r["margin_points"] == 0 and r["ci95_points"] == [0, 0] and r["share_reaching_target"] == 0


def test_the_interval_brackets_the_observed_margin_and_is_seeded():
    rng = np.random.default_rng(1)
    gold = rng.integers(3, size=400)
    better = np.where(rng.random(400) < 0.7, gold, rng.integers(3, size=400))
    worse = np.where(rng.random(400) < 0.5, gold, rng.integers(3, size=400))
    a = margin_ci.margin_interval(gold, better, worse, 3, 500, seed=3, target=5.0)
    b = margin_ci.margin_interval(gold, better, worse, 3, 500, seed=3, target=5.0)
    assert a == b
    low, high = a["ci95_points"]
    assert low < a["margin_points"] < high and a["margin_points"] > 0
