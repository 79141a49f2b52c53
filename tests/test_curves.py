"""dive_hf.curves: every stage folder keeps the Trainer's log history and a picture of it, shown by the card."""
import json

from PIL import Image


def test_stage_folders_keep_the_log_history_and_the_curves(two_stage_run):
    for stage in ("teacher", "student"):
        folder = two_stage_run["root"] / stage
        state = json.loads((folder / "trainer_state.json").read_text())
        losses = [entry for entry in state["log_history"] if "loss" in entry]
        assert state["global_step"] == 4 and len(losses) == 2  # logging_steps 2 over 4 steps
        if stage == "student":
            assert all("loss_hard" in e and "loss_distill" in e for e in losses)
        with Image.open(folder / "training_curves.png") as image:
            assert image.format == "PNG" and image.size[0] > 600
        assert "](training_curves.png)" in (folder / "README.md").read_text()


def test_curves_with_evaluations_and_without_training(tmp_path):
    from dive_hf.curves import plot_training_curves

    history = [{"epoch": e, "loss": 2.0 / e, "learning_rate": 0.1, "loss_hard": 1.5 / e, "loss_distill": 0.3 / e}
               for e in (1, 2, 3)] + [{"epoch": e, "eval_accuracy": 0.4 + 0.1 * e, "eval_many_shot_accuracy": 0.8,
                                       "eval_medium_shot_accuracy": 0.5, "eval_few_shot_accuracy": 0.1 * e}
                                      for e in (1, 2, 3)]
    assert plot_training_curves(history, tmp_path / "c.png", "student")
    with Image.open(tmp_path / "c.png") as image:
        wide = image.size[0]
    assert plot_training_curves(history[:3], tmp_path / "d.png")  # no evaluation: two panels, narrower
    with Image.open(tmp_path / "d.png") as image:
        assert image.size[0] < wide
    assert not plot_training_curves([{"epoch": 1, "eval_accuracy": 0.5}], tmp_path / "e.png")
    assert not (tmp_path / "e.png").exists()
