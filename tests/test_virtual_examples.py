"""The virtual-example distribution: closed forms, flatness figures, the plot and the command."""
import json

import numpy as np
import pytest
import torch

from dive_hf import virtual_example_distribution
from dive_hf.data import long_tail_counts
from dive_hf.virtual_examples import format_virtual_examples, write_virtual_examples

COUNTS = [300, 120, 60, 25, 10, 4]  # many: 0, 1 · medium: 2, 3 · few: 4, 5


def test_uniform_logits_give_n_over_c_per_class():
    report = virtual_example_distribution(np.zeros((60, 6)), COUNTS, temperatures=[1.0, 6.0], powers=[0.5, 2.0])
    assert report["images"] == 60 and len(report["rows"]) == 1 + 4
    for row in report["rows"][1:]:
        assert row["per_class"] == pytest.approx([10.0] * 6)
        assert row["relative_entropy"] == pytest.approx(1.0) and row["head_tail_ratio"] == pytest.approx(1.0)


def test_sums_match_softmax_of_scaled_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 6)) * 4
    report = virtual_example_distribution(logits, COUNTS, temperatures=[3.0], powers=[0.5])
    expected = torch.softmax(torch.tensor(logits) * 0.5 / 3.0, 1).sum(0).numpy()
    row = report["rows"][1]
    assert (row["temperature"], row["power"]) == (3.0, 0.5)
    assert row["per_class"] == pytest.approx(expected, rel=1e-5)
    assert sum(row["per_class"]) == pytest.approx(40, rel=1e-5)  # every image gives one virtual example in total


def test_real_counts_row_and_flatness():
    real = virtual_example_distribution(np.zeros((3, 6)), COUNTS)["rows"][0]
    assert real["temperature"] is None and real["per_class"] == COUNTS
    assert real["group_mean"] == pytest.approx({"many": 210.0, "medium": 42.5, "few": 7.0})
    assert real["head_tail_ratio"] == pytest.approx(30.0)
    p = np.array(COUNTS) / sum(COUNTS)
    assert real["relative_entropy"] == pytest.approx(-(p * np.log(p)).sum() / np.log(6))


def test_lower_power_and_higher_temperature_flatten():
    rng = np.random.default_rng(2)
    labels = rng.choice(6, size=200, p=np.array(COUNTS) / sum(COUNTS))
    logits = np.eye(6)[labels] * 8 + rng.normal(size=(200, 6))  # a confident head-biased teacher
    report = virtual_example_distribution(logits, COUNTS, temperatures=[1.0, 6.0], powers=[0.5, 1.0])
    flat = {(r["temperature"], r["power"]): r["relative_entropy"] for r in report["rows"][1:]}
    assert flat[(1.0, 0.5)] > flat[(1.0, 1.0)] and flat[(6.0, 1.0)] > flat[(1.0, 1.0)]
    assert report["rows"][0]["relative_entropy"] < flat[(6.0, 0.5)]


def test_mismatched_logits_and_counts():
    with pytest.raises(ValueError, match="do not match 6 classes"):
        virtual_example_distribution(np.zeros((3, 5)), COUNTS)


def test_table_and_files(tmp_path):
    report = virtual_example_distribution(np.zeros((12, 6)), COUNTS, temperatures=[3.0], powers=[0.5])
    table = format_virtual_examples(report)
    assert "real counts" in table and "virtual" in table and "   3   0.5" in table
    json_path, png_path = write_virtual_examples(report, tmp_path)
    assert json.loads(json_path.read_text())["rows"][1]["per_class"] == pytest.approx([2.0] * 6)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_virtual_examples_command_on_the_tiny_teacher(two_stage_run, tmp_path, capsys):
    from dive_hf.cli import main

    out = tmp_path / "ve"
    assert main(["virtual-examples", str(two_stage_run["root"] / "teacher"), "--dataset", "embedded:tiny",
                 "--temperatures", "1", "6", "--powers", "0.5", "--many_shot_threshold", "20",
                 "--few_shot_threshold", "8", "--device", "cpu", "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith(("real counts", "virtual  "))]
    assert len(rows) == 3 and rows[0].startswith("real counts")
    report = json.loads((out / "virtual_examples.json").read_text())
    assert report["images"] == sum(report["class_counts"]) == sum(long_tail_counts(40, 10, 10))
    assert sum(report["rows"][1]["per_class"]) == pytest.approx(report["images"], rel=1e-4)
    assert (out / "virtual_examples.png").read_bytes()[:4] == b"\x89PNG"
