"""Model cards: numbers only from evaluations that ran; loading snippets; metadata the Hub reads."""
from huggingface_hub import ModelCard

from dive_hf.card import render_model_card, results_table

CONFIG = {
    "architecture": "resnet32_cifar", "num_classes": 100,
    "dive": {"stage": "student", "temperature": 6.0, "power": 1.0, "alpha": 0.5, "class_counts": [500, 5],
             "imbalance_factor": 100.0, "many_shot_threshold": 100, "few_shot_threshold": 20,
             "shot_group_sizes": {"many": 35, "medium": 35, "few": 30},
             "dataset": {"name": "cifar100-lt", "eval_split": "test", "eval_size": 10000, "train_size": 10847},
             "teacher": {"name_or_path": "me/dive-resnet32-teacher", "repo_id": "me/dive-resnet32-teacher",
                         "sha256": "ab" * 32,
                         "architecture": "resnet32_cifar"}},
}
METRICS = {"eval_accuracy": 0.4535, "eval_many_shot_accuracy": 0.65, "eval_medium_shot_accuracy": 0.45,
           "eval_few_shot_accuracy": 0.2267, "eval_top5_accuracy": 0.75}


def test_card_reports_the_evaluation_and_how_to_load():
    text = render_model_card(CONFIG, METRICS, {"epochs": 200}, "me/dive-resnet32-student")
    card = ModelCard(text)
    results = card.data.eval_results
    assert {r.metric_name: r.metric_value for r in results} == {
        "Top-1": 45.35, "Many-shot top-1": 65.0, "Medium-shot top-1": 45.0, "Few-shot top-1": 22.67, "Top-5": 75.0}
    assert all(r.dataset_split == "test" for r in results)
    assert card.data.library_name == "timm" and {"long-tail", "dive", "knowledge-distillation"} <= set(card.data.tags)
    assert "| 45.35 | 65.00 | 45.00 | 22.67 | 75.00 |" in text
    assert 'timm.create_model("hf-hub:me/dive-resnet32-student", pretrained=True)' in text
    assert "import dive_hf" in text  # resnet32_cifar is registered by dive_hf
    assert "[me/dive-resnet32-teacher](https://huggingface.co/me/dive-resnet32-teacher)" in text
    assert "τ = 6.0, p = 1.0, α = 0.5" in text and "@inproceedings{he2021dive" in text


def test_card_without_evaluation_states_no_number():
    text = render_model_card(CONFIG, {}, {}, "me/x")
    assert "No evaluation was run" in text and "model-index" not in text
    assert results_table({}) == ""


def test_timm_native_architecture_needs_no_import():
    config = {**CONFIG, "architecture": "resnext50_32x4d"}
    assert "import dive_hf" not in render_model_card(config, METRICS, {}, "me/x")


def test_release_cards_render_only_evaluated_numbers(tmp_path):
    import json
    from pathlib import Path

    import yaml

    from dive_hf.cli import main

    sources = sorted((Path(__file__).resolve().parents[1] / "hub_cards").glob("*.yaml"))
    assert len(sources) == 10  # CIFAR-100-LT IF 10/50/100, ImageNet-LT, iNat2018 — each teacher and student
    for source in sources:
        out = tmp_path / f"{source.stem}.md"
        assert main(["card", str(source), "--output", str(out)]) == 0
        card = ModelCard.load(out)
        assert card.data.eval_results is None and "No evaluation was run" in card.text
        assert yaml.safe_load(source.read_text())["repo_id"] in card.text

    source = next(s for s in sources if s.stem == "dive-resnet32-cifar100-lt-if100")
    counts = [int(500 * 0.01 ** (i / 99)) for i in range(100)]
    results = {"split": "test", "many_shot_threshold": 100, "few_shot_threshold": 20, "class_counts": counts,
               "dataset": {"name": "uoft-cs/cifar100", "eval_size": 10000},
               "metrics": {"eval_accuracy": 0.4511, "eval_many_shot_accuracy": 0.6102,
                           "eval_medium_shot_accuracy": 0.4534, "eval_few_shot_accuracy": 0.2533}}
    (tmp_path / "eval_results.json").write_text(json.dumps(results))
    out = tmp_path / "README.md"
    assert main(["card", str(source), "--eval_results", str(tmp_path / "eval_results.json"), "--output", str(out)]) == 0
    card = ModelCard.load(out)
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == {
        "Top-1": 45.11, "Many-shot top-1": 61.02, "Medium-shot top-1": 45.34, "Few-shot top-1": 25.33}
    assert "many > 100 (35 classes)" in card.text and "10847 images" in card.text
    assert "dive-hf/dive-resnet32-cifar100-lt-if100-teacher" in card.text
    assert card.data.datasets == ["uoft-cs/cifar100"]
    assert 'pipeline("image-classification", model="dive-hf/dive-resnet32-cifar100-lt-if100")' in card.text
