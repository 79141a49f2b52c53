"""Many/medium/few-shot accuracy, as a function, an evaluate.Metric and a Trainer compute_metrics."""
import numpy as np
import pytest
from transformers import EvalPrediction

from dive_hf import LongTailAccuracy, long_tail_accuracy, make_compute_metrics

COUNTS = [200, 150, 50, 30, 10, 5]  # many: 0, 1; medium: 2, 3; few: 4, 5


def test_group_accuracy_is_the_mean_per_class_accuracy_like_shot_acc():
    refs = [0, 0, 1, 2, 3, 3, 4, 5, 5, 5]
    preds = [0, 1, 1, 2, 0, 3, 4, 5, 0, 0]
    out = long_tail_accuracy(preds, refs, COUNTS)
    assert out["accuracy"] == pytest.approx(6 / 10)
    assert out["many_shot_accuracy"] == pytest.approx((1 / 2 + 1) / 2)  # not 2/3 pooled over the group's images
    assert out["medium_shot_accuracy"] == pytest.approx((1 + 1 / 2) / 2)
    assert out["few_shot_accuracy"] == pytest.approx((1 + 1 / 3) / 2)
    assert out["per_class_accuracy"] == pytest.approx([0.5, 1.0, 1.0, 0.5, 1.0, 1 / 3])
    assert out["balanced_accuracy"] == pytest.approx(np.mean([0.5, 1.0, 1.0, 0.5, 1.0, 1 / 3]))
    assert out["num_images"] == 10


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


def test_top5_ties_count_for_the_true_class():
    scores = np.array([
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # all tied: nothing scores strictly higher than class 5 → top-5 hit
        [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # five classes higher than class 5 → miss
        [6.0, 5.0, 4.0, 3.0, 2.0, 2.0],  # four strictly higher, one tie → hit
    ])
    out = long_tail_accuracy(scores, [5, 5, 5], COUNTS)
    assert out["top5_accuracy"] == pytest.approx(2 / 3)
    assert out["accuracy"] == 0.0  # argmax picks the first maximal class (0) in the tied row


def test_add_batch_equals_one_shot():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(30, 6)).astype(np.float32)
    refs = rng.integers(0, 6, 30)
    metric = LongTailAccuracy()
    for lo in range(0, 30, 7):
        metric.add_batch(predictions=scores[lo:lo + 7], references=refs[lo:lo + 7])
    batched = metric.compute(class_counts=COUNTS)
    once = LongTailAccuracy().compute(predictions=scores, references=refs, class_counts=COUNTS)
    assert batched == once == long_tail_accuracy(scores, refs, COUNTS)


@pytest.mark.parametrize("kwargs, match", [
    (dict(predictions=[0, 1], references=[0]), "2 predictions but 1 references"),
    (dict(predictions=[], references=[]), "empty evaluation set"),
    (dict(predictions=[0], references=[0], class_counts=[5, 0, 3]), r"class_counts\[1\] = 0"),
    (dict(predictions=[0], references=[0], few_threshold=100), "few-shot threshold .100. must be below"),
    (dict(predictions=np.zeros((1, 4)), references=[0]), "scores have 4 classes but class_counts has 6"),
])
def test_bad_inputs(kwargs, match):
    kwargs.setdefault("class_counts", COUNTS)
    with pytest.raises(ValueError, match=match):
        long_tail_accuracy(**kwargs)


def test_metric_across_two_processes(tmp_path):
    """evaluate's own multi-process mode: each process adds its shard, process 0 computes over both."""
    import json
    import subprocess
    import sys

    code = (
        "import sys, json; from dive_hf import LongTailAccuracy\n"
        "rank = int(sys.argv[1])\n"
        "m = LongTailAccuracy(num_process=2, process_id=rank, experiment_id='lt', cache_dir=sys.argv[2])\n"
        "preds, refs = ([0, 1, 1], [0, 0, 1]) if rank == 0 else ([5, 4], [5, 5])\n"
        "m.add_batch(predictions=preds, references=refs)\n"
        "out = m.compute(class_counts=[200, 150, 50, 30, 10, 5])\n"
        "print(json.dumps(out))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(rank), str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    first = json.loads(outputs[0][0].strip().splitlines()[-1])
    assert first["accuracy"] == pytest.approx(3 / 5)
    assert first["many_shot_accuracy"] == pytest.approx(3 / 4) and first["few_shot_accuracy"] == pytest.approx(1 / 2)
    assert outputs[1][0].strip().splitlines()[-1] == "null"  # only process 0 gets the result
