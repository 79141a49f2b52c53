"""Model cards for stage output folders, rendered from the packaged Jinja template with ``huggingface_hub``.

Every number in a card comes from the folder's ``config.json`` and from an evaluation that ran: a card without
evaluation says so instead of showing accuracy.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .atomic import write_text
from .metrics import CITATION
from .names import (CARD_NAME, CONFIG_NAME, EVAL_RESULTS_NAME, PER_CLASS_PLOT_NAME, TRAINER_STATE_NAME,
                    TRAINING_CURVES_NAME, VIRTUAL_EXAMPLES_NAME)
from .report import percent

__all__ = ["CITATION", "default_repo_id", "describe_initial_weights", "describe_teacher", "descriptive_name",
           "project_url", "render_model_card", "render_release_card", "results_table", "write_folder_card"]

#: Where dive_hf lives when the installed metadata does not say (kept equal to ``[project.urls]`` in pyproject.toml).
PROJECT_URL = "https://github.com/dive-hf/dive_hf"
TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
_METRICS = (("accuracy", "Top-1"), ("many_shot_accuracy", "Many-shot top-1"),
            ("medium_shot_accuracy", "Medium-shot top-1"), ("few_shot_accuracy", "Few-shot top-1"),
            ("top5_accuracy", "Top-5"))


def results_table(metrics: dict, prefix: str = "eval_", teacher: dict | None = None) -> str:
    """A Markdown table: overall / many / medium / few top-1 (and top-5), in %. With the ``teacher``'s metrics (same
    split) a student's table has three rows: this model, its teacher, and the gain (student − teacher, points)."""
    cols = [(k, name) for k, name in _METRICS if f"{prefix}{k}" in metrics]
    if not cols:
        return ""
    if teacher is None:
        return "\n".join(["| " + " | ".join(name for _, name in cols) + " |", "|" + "---|" * len(cols),
                          "| " + " | ".join(percent(metrics[f"{prefix}{k}"]) for k, _ in cols) + " |"])
    cols = [(k, name) for k, name in cols if teacher.get(f"{prefix}{k}") is not None or k != "top5_accuracy"]

    def gain(key: str) -> str:
        s, t = metrics.get(f"{prefix}{key}"), teacher.get(f"{prefix}{key}")
        return "–" if s is None or t is None else f"{100 * (s - t):+.2f}"

    rows = [["this student"] + [percent(metrics.get(f"{prefix}{k}")) for k, _ in cols],
            ["its teacher"] + [percent(teacher.get(f"{prefix}{k}")) for k, _ in cols],
            ["gain (student − teacher)"] + [gain(k) for k, _ in cols]]
    return "\n".join(["| model | " + " | ".join(name for _, name in cols) + " |", "|" + "---|" * (len(cols) + 1)]
                     + ["| " + " | ".join(row) + " |" for row in rows])


def project_url() -> str:
    """dive_hf's home page, as the installed package's metadata (``[project.urls]`` in pyproject.toml) names it."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("dive-hf").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    found = dict(u.split(", ", 1) for u in urls if ", " in u)
    return found.get("Repository") or found.get("Homepage") or PROJECT_URL


def embedded_data_note(dataset_name: str) -> str | None:
    """What the embedded demo data is, for a card trained on it (a Hub visitor has never heard of it)."""
    preset = dataset_name.removeprefix("dive_hf-embedded-").removeprefix("embedded:")
    if preset == dataset_name:
        return None
    from .data.synthetic import EMBEDDED_PRESETS

    about = EMBEDDED_PRESETS.get(preset)
    size = (f" {about.num_classes} classes in {about.num_families} families of look-alike shapes, "
            f"{about.train_per_class} training images per class before the long-tail cut, {about.test_per_class} "
            f"test images per class;") if about else ""
    return (f"`{dataset_name}` is the small synthetic data set that ships with dive_hf (preset `{preset}`):{size} "
            f"32×32 images of procedurally drawn shapes, the same on every machine. It exists to demonstrate and "
            f"test the method in minutes on a CPU; accuracy on it says nothing about natural images.")


def render_model_card(config: dict, metrics: dict, training: dict, repo_id: str, dataset_name: str | None = None,
                      license: str = "apache-2.0", per_class_plot: str | None = None, curves_plot: str | None = None,
                      virtual_plot: str | None = None, hub_datasets: list[str] | None = None,
                      teacher_metrics: dict | None = None, curves_alt: str | None = None) -> str:
    """The model card text.

    Args:
        config: the folder's ``config.json`` (with its ``dive`` block).
        metrics: ``eval_*`` metrics of an evaluation that ran (may be empty).
        training: settings shown in the training table.
        repo_id: the Hub repo id used in the loading snippets (and ``model-index``).
        teacher_metrics: a student's teacher's ``eval_*`` metrics on the same split (a teacher row and the gain).
        curves_alt: what ``training_curves.png`` shows (its alt text).
    """
    dive = config.get("dive", {})
    stage = dive.get("stage", "teacher")
    dataset = dive.get("dataset", {})
    dataset_name = dataset_name or dataset.get("name") or "custom long-tailed dataset"
    if hub_datasets is None and dataset_name.count("/") == 1 and not Path(dataset_name).exists():
        hub_datasets = [dataset_name]  # a Hub dataset id: the card's metadata links it
    split = dataset.get("eval_split") or "evaluation"
    name = repo_id.split("/")[-1]
    eval_results = [
        EvalResult(task_type="image-classification", task_name="Long-tailed image classification",
                   dataset_type=(hub_datasets or [dataset_name])[0], dataset_name=dataset_name, dataset_split=split,
                   metric_type="accuracy" if key == "accuracy" else key, metric_name=name_,
                   metric_value=round(100 * metrics[f"eval_{key}"], 2))
        for key, name_ in _METRICS if metrics.get(f"eval_{key}") is not None
    ]
    tags = ["image-classification", "timm", "long-tail", "dive-hf"] + (["balanced-softmax"] if stage != "baseline"
                                                                       else ["cross-entropy-baseline"])
    if stage == "student":
        tags += ["knowledge-distillation", "dive"]
    card_data = ModelCardData(
        library_name="timm", license=license, tags=tags, pipeline_tag="image-classification",
        model_name=name, eval_results=eval_results or None, datasets=hub_datasets or None,
    )
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
    stage_title = {"student": "DiVE student", "baseline": "cross-entropy baseline"}.get(
        stage, "Balanced-Softmax teacher")
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATE),
        model_name=name,
        stage_title=stage_title,
        method_sentence=method,
        num_classes=config.get("num_classes"),
        architecture=config.get("architecture"),
        custom_arch=str(config.get("architecture", "")).endswith("_cifar"),
        dataset_name=dataset_name, dataset_note=embedded_data_note(dataset_name),
        train_size=dataset.get("train_size", sum(dive.get("class_counts", []))),
        imbalance_factor=dive.get("imbalance_factor"),
        teacher=describe_teacher(dive.get("teacher")),
        results_table=results_table(metrics, teacher=teacher_metrics if stage == "student" else None),
        teacher_compared=bool(teacher_metrics) and stage == "student" and bool(metrics),
        eval_split=split, eval_size=dataset.get("eval_size", "?"),
        many_threshold=dive.get("many_shot_threshold"), few_threshold=dive.get("few_shot_threshold"),
        group_sizes=groups, repo_id=repo_id, training=training, citation=CITATION, per_class_plot=per_class_plot,
        per_class_alt=(f"Per-class top-1 accuracy of this {stage_title} ({config.get('architecture')}) on the "
                       f"{split} split, classes sorted by training images (head to tail), many/medium/few-shot "
                       f"groups shaded, training images per class as a line"),
        curves_plot=curves_plot, curves_alt=curves_alt or f"Training curves of this {stage_title}",
        virtual_plot=virtual_plot, project_url=project_url(),
        initial_weights=_initial_weights_line(dive.get("initial_weights")),
    )
    return str(card)


def describe_teacher(teacher: dict | None) -> str | None:
    """The card's teacher line: linked by its Hub repo id when it has one, else named by its architecture (a local
    folder's path means nothing to a Hub visitor), with input size and sha256."""
    if not teacher:
        return None
    repo = teacher.get("repo_id")  # decided when the student was trained: the Hub id it was loaded from or pushed to
    arch = f"`{teacher.get('architecture') or 'unknown architecture'}`" + (
        f" at {teacher['input_size'][-1]} px" if teacher.get("input_size") else "")
    sha = f"sha256 `{teacher['sha256'][:12]}…`" if teacher.get("sha256") else None
    if repo:
        return f"[{repo}](https://huggingface.co/{repo}) ({', '.join([arch] + ([sha] if sha else []))})"
    return f"a Balanced-Softmax {arch} trained by dive_hf, not published" + (f" ({sha})" if sha else "")


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


def default_repo_id(folder: str | Path, config: dict | None = None) -> str:
    """The placeholder repo id of the loading snippets before a folder has a Hub id: ``<user>/`` and a name that
    says what the model is (:func:`descriptive_name`), or the folder's name when it has no ``config.json``."""
    return f"<user>/{descriptive_name(config) if config else Path(folder).resolve().name}"


def descriptive_name(config: dict) -> str:
    """A repo name for a stage folder's model, e.g. ``resnet20_cifar-dive-t3-p0.5-embedded-demo`` or
    ``resnet50-bsce-teacher-imagenet-lt``: the architecture, what trained it, the data."""
    dive = config.get("dive") or {}
    stage = dive.get("stage", "teacher")
    method = {"teacher": "bsce-teacher", "baseline": "ce-baseline", "student_bsce": "bsce"}.get(stage, "dive")
    if stage == "student":
        method += f"-t{dive.get('temperature', '?'):g}-p{dive.get('power', '?'):g}" if all(
            isinstance(dive.get(k), (int, float)) for k in ("temperature", "power")) else ""
    data = str((dive.get("dataset") or {}).get("name") or "").removeprefix("dive_hf-")
    parts = [str(config.get("architecture") or "model"), method] + ([data] if data else [])
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-.")[:96]


def write_folder_card(folder: str | Path, repo_id: str | None = None) -> str:
    """Render ``README.md`` of a stage folder from its own files — ``config.json`` (with the ``dive`` block and its
    ``training`` summary), ``eval_results.json`` (with the teacher's numbers on the same split, for a student),
    ``trainer_state.json`` and the figures present — and write it atomically. Returns the text."""
    from .curves import describe_training_curves

    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    results_path = folder / EVAL_RESULTS_NAME
    report = json.loads(results_path.read_text()) if results_path.is_file() else {}
    plot = PER_CLASS_PLOT_NAME if (folder / PER_CLASS_PLOT_NAME).is_file() else None
    training = (config.get("dive") or {}).get("training", {})
    curves = TRAINING_CURVES_NAME if (folder / TRAINING_CURVES_NAME).is_file() else None
    state_path = folder / TRAINER_STATE_NAME
    history = (json.loads(state_path.read_text()).get("log_history") or []) if curves and state_path.is_file() else []
    virtual = f"{VIRTUAL_EXAMPLES_NAME}.png" if (folder / f"{VIRTUAL_EXAMPLES_NAME}.png").is_file() else None
    text = render_model_card(config, report.get("metrics", {}), training, repo_id or default_repo_id(folder, config),
                             per_class_plot=plot, curves_plot=curves, virtual_plot=virtual,
                             teacher_metrics=(report.get("teacher") or {}).get("metrics"),
                             curves_alt=describe_training_curves(history) if history else None)
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
        _check_same_data(source, eval_results)
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


def _check_same_data(source: dict, eval_results: dict) -> None:
    """A release card states its data set: refuse an evaluation that records another one (by name: the card's
    ``name`` or Hub ``hub_id``, or a local copy named like the Hub id's last part), or another imbalance factor."""
    declared = source["dataset"]
    hub_id = declared.get("hub_id") or ""
    accepted = {str(n).lower() for n in (declared.get("name"), hub_id, hub_id.split("/")[-1]) if n}
    recorded = str((eval_results.get("dataset") or {}).get("name") or "")
    says = f"{source['repo_id']} is declared on {declared.get('name')}" + (f" ({hub_id})" if hub_id else "")
    if not recorded:
        raise ValueError(f"eval_results.json does not record which data set it comes from, so it cannot be checked "
                         f"against the card: {says}; evaluate with dive-hf evaluate ... --dataset_name "
                         f"{hub_id or 'NAME'}")
    if recorded.lower() not in accepted and recorded.split("/")[-1].lower() not in accepted:
        raise ValueError(f"eval_results.json comes from the data set {recorded!r}, but {says}: wrong evaluation "
                         f"file?")
    counts, wanted = eval_results.get("class_counts") or [], declared.get("imbalance_factor")
    if counts and wanted and min(counts) > 0 and abs(max(counts) / min(counts) - float(wanted)) > 0.05 * float(wanted):
        raise ValueError(f"eval_results.json's training class counts have imbalance factor "
                         f"{max(counts) / min(counts):.1f}, but {says} at IF {wanted:g}: wrong evaluation file?")
