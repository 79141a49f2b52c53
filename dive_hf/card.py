"""Model cards for stage output folders, rendered from the packaged Jinja template with ``huggingface_hub``.

Every number in a card comes from the folder's ``config.json`` and from an evaluation that ran: a card without
evaluation says so instead of showing accuracy.
"""
from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .atomic import write_text
from .metrics import CITATION
from .names import (CARD_NAME, CONFIG_NAME, EVAL_RESULTS_NAME, PER_CLASS_PLOT_NAME, TRAINING_CURVES_NAME,
                    VIRTUAL_EXAMPLES_NAME)
from .report import percent

__all__ = ["CITATION", "default_repo_id", "describe_initial_weights", "render_model_card", "render_release_card",
           "results_table", "write_folder_card"]

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
_METRICS = (("accuracy", "Top-1"), ("many_shot_accuracy", "Many-shot top-1"),
            ("medium_shot_accuracy", "Medium-shot top-1"), ("few_shot_accuracy", "Few-shot top-1"),
            ("top5_accuracy", "Top-5"))


def results_table(metrics: dict, prefix: str = "eval_") -> str:
    """A Markdown table: overall / many / medium / few top-1 (and top-5), in %."""
    cols = [(k, name) for k, name in _METRICS if f"{prefix}{k}" in metrics]
    if not cols:
        return ""
    head = "| " + " | ".join(name for _, name in cols) + " |"
    rule = "|" + "---|" * len(cols)
    row = "| " + " | ".join(percent(metrics[f"{prefix}{k}"]) for k, _ in cols) + " |"
    return "\n".join([head, rule, row])


def render_model_card(config: dict, metrics: dict, training: dict, repo_id: str, dataset_name: str | None = None,
                      license: str = "apache-2.0", per_class_plot: str | None = None, curves_plot: str | None = None,
                      virtual_plot: str | None = None,
                      hub_datasets: list[str] | None = None) -> str:
    """The model card text.

    Args:
        config: the folder's ``config.json`` (with its ``dive`` block).
        metrics: ``eval_*`` metrics of an evaluation that ran (may be empty).
        training: settings shown in the training table.
        repo_id: the Hub repo id used in the loading snippets (and ``model-index``).
    """
    dive = config.get("dive", {})
    stage = dive.get("stage", "teacher")
    dataset = dive.get("dataset", {})
    dataset_name = dataset_name or dataset.get("name") or "custom long-tailed dataset"
    if hub_datasets is None and dataset_name.count("/") == 1 and not Path(dataset_name).exists():
        hub_datasets = [dataset_name]  # a Hub dataset id: the card's metadata links it
    split = dataset.get("eval_split") or "evaluation"
    eval_results = [
        EvalResult(task_type="image-classification", task_name="Long-tailed image classification",
                   dataset_type=(hub_datasets or [dataset_name])[0], dataset_name=dataset_name, dataset_split=split,
                   metric_type="accuracy" if key == "accuracy" else key, metric_name=name,
                   metric_value=round(100 * metrics[f"eval_{key}"], 2))
        for key, name in _METRICS if metrics.get(f"eval_{key}") is not None
    ]
    tags = ["image-classification", "timm", "long-tail", "dive-hf"] + (["balanced-softmax"] if stage != "baseline"
                                                                       else ["cross-entropy-baseline"])
    if stage == "student":
        tags += ["knowledge-distillation", "dive"]
    card_data = ModelCardData(
        library_name="timm", license=license, tags=tags, pipeline_tag="image-classification",
        model_name=repo_id, eval_results=eval_results or None, datasets=hub_datasets or None,
    )
    teacher = dive.get("teacher")
    teacher_id = (teacher or {}).get("repo_id") or (teacher or {}).get("name_or_path") or ""
    is_hub_id = teacher_id.count("/") == 1 and not Path(teacher_id).exists()
    groups = dive.get("shot_group_sizes", {"many": "?", "medium": "?", "few": "?"})
    if stage == "student":
        tau_s = dive.get("student_temperature")
        method = (f"a DiVE student distilled from a Balanced-Softmax teacher's virtual examples "
                  f"(τ = {dive.get('temperature')}, p = {dive.get('power')}, α = {dive.get('alpha')}"
                  + (f", student temperature τ_s = {tau_s}" if tau_s not in (None, dive.get("temperature")) else "")
                  + ").")
    elif stage == "baseline":
        method = ("plain cross-entropy, no long-tail correction: the baseline that Balanced Softmax and DiVE are "
                  "compared against.")
    else:
        method = "Balanced Softmax cross-entropy (the log class prior is added to the logits during training only)."
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATE),
        model_name=repo_id.split("/")[-1],
        stage_title={"student": "DiVE student", "baseline": "cross-entropy baseline"}.get(
            stage, "Balanced-Softmax teacher"),
        method_sentence=method,
        num_classes=config.get("num_classes"),
        architecture=config.get("architecture"),
        custom_arch=str(config.get("architecture", "")).endswith("_cifar"),
        dataset_name=dataset_name,
        train_size=dataset.get("train_size", sum(dive.get("class_counts", []))),
        imbalance_factor=dive.get("imbalance_factor"),
        teacher=teacher, teacher_link=f"https://huggingface.co/{teacher_id}" if is_hub_id else None,
        results_table=results_table(metrics), eval_split=split, eval_size=dataset.get("eval_size", "?"),
        many_threshold=dive.get("many_shot_threshold"), few_threshold=dive.get("few_shot_threshold"),
        group_sizes=groups, repo_id=repo_id, training=training, citation=CITATION, per_class_plot=per_class_plot,
        curves_plot=curves_plot, virtual_plot=virtual_plot,
        initial_weights=_initial_weights_line(dive.get("initial_weights")),
    )
    return str(card)


def _initial_weights_line(record: dict | None) -> str | None:
    """The card's "Initial weights" line for a fine-tuned checkpoint (``None``: trained from scratch or unknown)."""
    if not record or record.get("source") == "random":
        return None
    return describe_initial_weights(record)


def describe_initial_weights(record: dict | None) -> str:
    """One line for logs and cards, e.g. ``timm's pretrained `resnet50.a1_in1k` (sha256 1a2b3c4d5e6f…); head new:
    1000 → 20 classes``."""
    if not record:
        return "not recorded"
    if record.get("source") == "random":
        return "random (trained from scratch)"
    if record.get("source") == "module":
        return record.get("note", "a module given to the trainer")
    if not record.get("name_or_path"):
        return "not recorded"
    kind = {"timm": "timm's pretrained", "file": "file", "folder": "folder", "hf-hub": "Hub repo"}.get(
        record.get("source"), record.get("source"))
    name = record.get("name_or_path")
    about = [record["architecture"]] if record.get("architecture") and record.get("architecture") != name else []
    about += [f"sha256 {record['sha256'][:12]}…"] if record.get("sha256") else []
    head = f"; head {record['head']}" if record.get("head") else ""
    return f"{kind} `{name}`" + (f" ({', '.join(about)})" if about else "") + head


def default_repo_id(folder: str | Path) -> str:
    """The placeholder repo id of the loading snippets before a folder has a Hub id."""
    return f"<user>/{Path(folder).resolve().name}"


def write_folder_card(folder: str | Path, repo_id: str | None = None) -> str:
    """Render ``README.md`` of a stage folder from its own files — ``config.json`` (with the ``dive`` block and its
    ``training`` summary), ``eval_results.json`` and ``per_class_accuracy.png`` if present — and write it
    atomically. Returns the text."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    results_path = folder / EVAL_RESULTS_NAME
    metrics = json.loads(results_path.read_text()).get("metrics", {}) if results_path.is_file() else {}
    plot = PER_CLASS_PLOT_NAME if (folder / PER_CLASS_PLOT_NAME).is_file() else None
    training = (config.get("dive") or {}).get("training", {})
    curves = TRAINING_CURVES_NAME if (folder / TRAINING_CURVES_NAME).is_file() else None
    virtual = f"{VIRTUAL_EXAMPLES_NAME}.png" if (folder / f"{VIRTUAL_EXAMPLES_NAME}.png").is_file() else None
    text = render_model_card(config, metrics, training, repo_id or default_repo_id(folder), per_class_plot=plot,
                             curves_plot=curves, virtual_plot=virtual)
    write_text(folder / CARD_NAME, text)
    return text


def render_release_card(source: dict, eval_results: dict | None) -> str:
    """A release card (``hub_cards/*.yaml``) rendered with the numbers of the checkpoint's own
    ``eval_results.json`` — and with none when there is no evaluation yet."""
    from .data.long_tail import shot_groups

    for key in ("repo_id", "stage", "backbone", "num_classes", "dataset"):
        if key not in source:
            raise ValueError(f"card source lacks {key!r}")
    dive = {"stage": source["stage"], "dataset": {"name": source["dataset"].get("name"),
                                                  "eval_split": source["dataset"].get("split")}}
    if source["stage"] == "student":
        dive.update({k: source.get(k) for k in ("temperature", "power", "alpha", "student_temperature")})
        dive["teacher"] = {"repo_id": source.get("teacher_repo_id"), "name_or_path": source.get("teacher_repo_id"),
                           "architecture": source["backbone"]}
    metrics = {}
    if eval_results:
        counts = eval_results.get("class_counts") or []
        if counts and len(counts) != source["num_classes"]:
            raise ValueError(f"eval_results.json has {len(counts)} classes but {source['repo_id']} is declared "
                             f"with {source['num_classes']}: wrong evaluation file?")
        many, few = eval_results["many_shot_threshold"], eval_results["few_shot_threshold"]
        dive.update({"class_counts": counts, "many_shot_threshold": many, "few_shot_threshold": few,
                     "imbalance_factor": round(max(counts) / min(counts), 4) if counts else None,
                     "shot_group_sizes": {g: len(m) for g, m in shot_groups(counts, many, few).items()}})
        dive["dataset"].update(eval_split=eval_results.get("split") or dive["dataset"]["eval_split"],
                               eval_size=(eval_results.get("dataset") or {}).get("eval_size", "?"),
                               train_size=sum(counts) if counts else None)
        metrics = eval_results.get("metrics", {})
    config = {"architecture": source["backbone"], "num_classes": source["num_classes"], "dive": dive}
    training = {"recipe": f"`{source['recipe']}`"} if source.get("recipe") else {}
    hub_id = source["dataset"].get("hub_id")
    return render_model_card(config, metrics, training, source["repo_id"], dataset_name=source["dataset"].get("name"),
                             hub_datasets=[hub_id] if hub_id else None)
