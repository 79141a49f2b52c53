"""`dive-hf evaluate`: the same numbers as the Trainer, the report files, and clear errors."""
import json

import pytest

from dive_hf.cli import main


def test_evaluate_command_reproduces_the_trainers_evaluation(two_stage_run, tmp_path, capsys):
    folder = two_stage_run["root"] / "student"
    out = tmp_path / "report"
    assert main(["evaluate", str(folder), "--dataset", "embedded:tiny", "--device", "cpu", "--batch_size", "32",
                 "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "eval_results.json").read_text())
    trained = json.loads((folder / "eval_results.json").read_text())
    for key in ("eval_accuracy", "eval_many_shot_accuracy", "eval_medium_shot_accuracy", "eval_few_shot_accuracy",
                "eval_top5_accuracy"):
        assert report["metrics"][key] == pytest.approx(trained["metrics"][key]), key
    assert report["class_counts_source"] == "checkpoint" and report["split"] == "test"
    assert report["many_shot_threshold"] == 20 and report["few_shot_threshold"] == 8  # from the checkpoint
    assert len(report["per_class_accuracy"]) == 10 and report["per_class_accuracy"] == trained["per_class_accuracy"]
    assert (out / "per_class_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert f"{100 * report['metrics']['eval_accuracy']:.2f}" in printed


def test_stage_folders_carry_the_per_class_plot(two_stage_run):
    folder = two_stage_run["root"] / "teacher"
    assert (folder / "per_class_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert "![Per-class top-1 accuracy" in (folder / "README.md").read_text()


def test_evaluate_rejects_a_split_with_other_classes(two_stage_run, tiny_data, tmp_path):
    """A saved dataset (save_to_disk folder) whose label order differs from the model's."""
    import datasets

    names = tiny_data["test"].features["label"].names
    reordered = tiny_data["test"].cast_column("label", datasets.ClassLabel(names=names[::-1]))
    datasets.DatasetDict({"test": reordered}).save_to_disk(str(tmp_path / "data"))
    with pytest.raises(ValueError, match=f"class 0 is '{names[-1]}' where '{names[0]}' is expected"):
        main(["evaluate", str(two_stage_run["root"] / "student"), "--dataset", str(tmp_path / "data"),
              "--device", "cpu", "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing written for a failed evaluation


def test_evaluate_needs_a_model_and_an_eval_split(two_stage_run, tmp_path):
    with pytest.raises(ValueError, match="give the model"):
        main(["evaluate", "--dataset", "embedded:tiny"])
    with pytest.raises(ValueError, match="no evaluation split"):
        main(["evaluate", str(two_stage_run["root"] / "student"), "--dataset", "embedded:tiny", "--eval_split",
              "validation", "--output_dir", str(tmp_path)])


def test_a_trainer_built_from_a_checkpoint_predicts_and_evaluates_without_a_training_set(two_stage_run, tiny_splits,
                                                                                         tmp_path, monkeypatch):
    """for_checkpoint: class counts, label names and shot thresholds from the folder's `dive` block; predict gives
    the logits of the plain loop, evaluate the numbers the trainer saved; nothing is written."""
    monkeypatch.chdir(tmp_path)
    import numpy as np

    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer
    from dive_hf.evaluation import predict_logits
    from dive_hf.trainer.predict import prediction_config

    _, _, test = tiny_splits
    folder = two_stage_run["root"] / "student"
    trained = json.loads((folder / "eval_results.json").read_text())
    out = tmp_path / "predict"
    args = prediction_config(out, batch_size=32, device="cpu", many_shot_threshold=20, few_shot_threshold=8)
    trainer = BalancedSoftmaxTrainer.for_checkpoint(str(folder), args)
    assert trainer.class_counts == trained["class_counts"] and len(trainer.class_names) == 10
    predicted = trainer.predict(test)
    expected, labels = predict_logits(trainer.model, test, device="cpu", progress=False)
    np.testing.assert_allclose(predicted.predictions, expected, rtol=1e-5, atol=1e-5)
    assert (predicted.label_ids == labels).all()
    metrics = trainer.evaluate(eval_dataset=test)
    for key in ("eval_accuracy", "eval_many_shot_accuracy", "eval_few_shot_accuracy"):
        assert metrics[key] == pytest.approx(trained["metrics"][key]), key
    assert not any(out.iterdir())  # the Trainer makes its output_dir, nothing more
    default = BalancedSoftmaxTrainer.for_checkpoint(str(folder))  # thresholds from the checkpoint too
    assert (default.args.many_shot_threshold, default.args.few_shot_threshold) == (20, 8)
    assert not any((tmp_path / "outputs/predict/student").iterdir())
    with pytest.raises(ValueError, match="or class_counts to evaluate or predict without one"):
        BalancedSoftmaxTrainer(model=trainer.model, args=BalancedSoftmaxConfig(output_dir=str(out), use_cpu=True))
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
        prediction_config(out, device="cuda:1")
