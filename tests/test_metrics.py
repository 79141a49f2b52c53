"""Many/medium/few-shot accuracy, as a function, an evaluate.Metric and a Trainer compute_metrics."""
import numpy as np
import pytest
from transformers import EvalPrediction

from dive_hf import LongTailAccuracy, long_tail_accuracy, make_compute_metrics

COUNTS = [200, 150, 50, 30, 10, 5]  # many: 0, 1; medium: 2, 3; few: 4, 5


def test_group_accuracy_is_over_test_images():
    refs = [0, 0, 1, 2, 3, 3, 4, 5, 5, 5]
    preds = [0, 1, 1, 2, 0, 3, 4, 5, 0, 0]
    out = long_tail_accuracy(preds, refs, COUNTS)
    assert out["accuracy"] == pytest.approx(6 / 10)
    assert out["many_shot_accuracy"] == pytest.approx(2 / 3)
    assert out["medium_shot_accuracy"] == pytest.approx(2 / 3)
    assert out["few_shot_accuracy"] == pytest.approx(2 / 4)
    assert out["per_class_accuracy"] == pytest.approx([0.5, 1.0, 1.0, 0.5, 1.0, 1 / 3])
    assert out["balanced_accuracy"] == pytest.approx(np.mean([0.5, 1.0, 1.0, 0.5, 1.0, 1 / 3]))


def test_empty_group_is_none_not_zero():
    out = long_tail_accuracy([0, 1], [0, 1], [500, 300])
    assert out["medium_shot_accuracy"] is None and out["few_shot_accuracy"] is None
    assert out["many_shot_accuracy"] == 1.0


def test_scores_give_top5():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 6))
    refs = rng.integers(0, 6, 40)
    out = long_tail_accuracy(scores, refs, COUNTS)
    top5 = np.argsort(-scores, 1)[:, :5]
    assert out["top5_accuracy"] == pytest.approx(np.mean([r in row for r, row in zip(refs, top5)]))
    assert out["accuracy"] == pytest.approx(np.mean(scores.argmax(1) == refs))


def test_reference_out_of_range_names_the_label():
    with pytest.raises(ValueError, match="reference label 9 is outside"):
        long_tail_accuracy([0], [9], COUNTS)


def test_evaluate_metric_offline_with_add_batch():
    metric = LongTailAccuracy()
    metric.add_batch(predictions=[0, 1, 1], references=[0, 0, 1])
    metric.add_batch(predictions=[5], references=[5])
    out = metric.compute(class_counts=COUNTS)
    assert out["accuracy"] == pytest.approx(3 / 4)
    assert out["few_shot_accuracy"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="needs class_counts"):
        LongTailAccuracy().compute(predictions=[0], references=[0])


def test_compute_metrics_for_trainer_drops_none_groups():
    fn = make_compute_metrics([500, 300], many_threshold=100, few_threshold=20)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    out = fn(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 1])))
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert "few_shot_accuracy" not in out and "per_class_accuracy" not in out
