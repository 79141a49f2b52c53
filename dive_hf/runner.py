"""The recipe runner: one launch trains the planned stages (baseline, teacher, DiVE students) and prints one table.

Order of work, so that a mistake costs seconds and nothing is lost: validate every flag and build every stage's
configuration, plan the folders (:mod:`dive_hf.stage_plan` refuses plans that would overwrite a teacher or a complete
folder), take the output folder's lock, and only then load data and models. Each stage saves its final weights
*before* its final evaluation, so a failed evaluation never throws a trained model away (``--resume_from_checkpoint
last`` evaluates it again without retraining).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

from .atomic import write_json
from .config import BalancedSoftmaxConfig, DiVEConfig
from .data.sources import DataArguments, load_splits, load_val_split
from .lock import output_lock
from .preemption import stop_on_signal
from .presets import set_scaled_learning_rate, split_global_batch
from .resume import read_json_object
from .run_log import describe_batch
from .stage_models import SplitsByPreprocessing, check_model_specs, model_spec
from .stage_plan import StagePlan, folder_state, parse_sweep, plan_stages, student_folder_name

__all__ = ["run_recipe", "resolve_batch", "describe_effective_batch", "stage_config", "device_split",
           "student_settings"]


# ---- batch and learning rate --------------------------------------------------------------------------------------
def resolve_batch(recipe, training: dict, world_size: int) -> dict:
    """Per-device batch and learning rate for ``world_size`` processes; returns a description of what was done."""
    accumulation = training.get("gradient_accumulation_steps") or 1
    base_lr = training["learning_rate"]
    training["per_device_train_batch_size"], learning_rate, effective = split_global_batch(
        recipe.global_batch_size, training.get("per_device_train_batch_size", 1), base_lr, recipe.lr_reference_batch,
        world_size, accumulation)
    set_scaled_learning_rate(training, learning_rate)
    return {"world_size": world_size, "per_device": training["per_device_train_batch_size"],
            "accumulation": accumulation, "effective": effective, "base_lr": base_lr,
            "learning_rate": training["learning_rate"], "reference": recipe.lr_reference_batch,
            "classifier_lr": training.get("classifier_lr")}


def describe_effective_batch(b: dict) -> str:
    line = (f"effective batch {b['effective']} = {describe_batch(b['per_device'], b['world_size'], b['accumulation'])}"
            f"; learning rate {b['learning_rate']:g}")
    if b["reference"]:
        line += f" (= {b['base_lr']:g} × {b['effective']}/{b['reference']}, linear scaling)"
    if b.get("classifier_lr") is not None:
        line += f"; classifier {b['classifier_lr']:g}"
    return line


# ---- stages -------------------------------------------------------------------------------------------------------
def stage_config(cls, training: dict, recipe, stage: str, folder: str | Path | None = None, **extra):
    """The configuration of one stage: shared values, its folder (``OUTPUT_DIR/<stage>`` by default), its repo."""
    from dataclasses import fields

    names = {f.name for f in fields(cls) if f.init}
    kwargs = {k: v for k, v in training.items() if k in names}
    repo_id = {"teacher": recipe.teacher_repo_id, "student": recipe.student_repo_id}.get(stage)
    push = bool(training.get("push_to_hub")) and repo_id is not None
    kwargs.update(output_dir=str(folder or Path(training["output_dir"]) / stage), resume_from_checkpoint=None,
                  push_to_hub=push, hub_model_id=repo_id if push else None, **extra)
    return cls(**kwargs)


def student_settings(recipe, training: dict) -> list[tuple[float, float, float | None, str]]:
    """(τ, p, τ_s, folder name) of each student: the flags' one setting in ``student/`` (or ``--student_dir``), or
    each ``--sweep`` entry in its own ``student_t<τ>_p<p>[_ts<τ_s>]/``."""
    if not recipe.sweep:
        return [(training.get("temperature", 3.0), training.get("power", 0.5), training.get("student_temperature"),
                 recipe.student_dir or "student")]
    if recipe.student_dir:
        raise ValueError("--student_dir names one student; a --sweep names each student's folder itself")
    if training.get("student_temperature") is not None:
        raise ValueError(f"--student_temperature {training['student_temperature']:g} is not applied to a --sweep: "
                         f"write it in each sweep entry as τ,p,τ_s (e.g. --sweep 3,0.5,"
                         f"{training['student_temperature']:g})")
    return [(tau, power, tau_s, student_folder_name(tau, power, tau_s)) for tau, power, tau_s in
            parse_sweep(recipe.sweep)]


def _config_for(plan: StagePlan, training: dict, recipe, teacher: str):
    model = model_spec(recipe, training, plan.kind).config_values()  # the teacher's own --teacher_* values
    if plan.kind != "student":
        return stage_config(BalancedSoftmaxConfig, training, recipe, plan.kind, plan.folder, **model)
    return stage_config(DiVEConfig, training, recipe, "student", plan.folder, teacher_model_name_or_path=teacher,
                        temperature=plan.temperature, power=plan.power, student_temperature=plan.student_temperature,
                        **model)


def device_split(split, model, augment: bool, image_column: str, label_column: str, seed: int):
    """A split as :class:`~dive_hf.data.DeviceImages` for ``model`` (its input size, mean and std)."""
    import datasets
    from timm.data import resolve_data_config

    from .data.device_images import DeviceImages
    from .data.transforms import SMALL_IMAGE_MAX

    config = resolve_data_config({}, model=model)
    size = config["input_size"][-1]
    if size > SMALL_IMAGE_MAX:
        raise ValueError(f"--device_data is the small-image fast path (inputs ≤ {SMALL_IMAGE_MAX} px); "
                         f"{model.default_cfg.get('architecture', type(model).__name__)} takes {size} px")
    if len(split):  # checked on the first image, before decoding them all (DeviceImages checks they are equal)
        first = split[0][image_column]
        width, height = (datasets.Image().decode_example(first) if isinstance(first, dict) else first).size
        if (width, height) != (size, size):  # the CPU path crops/pads to the model's size; this one cannot
            raise ValueError(f"--device_data needs images of the model's input size {size}×{size}, but the split's "
                             f"are {width}×{height}; resize the data or leave out --device_data")
    return DeviceImages(split, config["mean"], config["std"], train=augment, padding=size // 8,
                        image_column=image_column, label_column=label_column, seed=seed)


def _virtual_example_rows(report: dict, temperature: float, power: float) -> dict:
    """The real counts and one (τ, p) row of a grid report."""
    rows = [r for r in report["rows"] if r["temperature"] is None
            or (r["temperature"] == temperature and r["power"] == power)]
    return {**report, "rows": rows}


# ---- the run ------------------------------------------------------------------------------------------------------
def run_recipe(recipe, data: DataArguments, training: dict, log=print) -> dict:
    """Train the planned stage(s), evaluate, write the stage folders, the table and ``results.json``."""
    import torch

    start = time.time()
    training = dict(training)
    if not torch.cuda.is_available():
        training["use_cpu"] = True  # also what makes N CPU processes train with DDP over gloo
        training["dataloader_pin_memory"] = False
    stages = recipe.stages
    if recipe.sweep and "student" not in stages:
        raise ValueError(f"--sweep names students to distil, but --stage {' '.join(recipe.stage)} trains no student: "
                         f"add student to --stage (e.g. --stage student --sweep ...) or leave out --sweep")
    students = student_settings(recipe, training) if "student" in stages else []
    if training.get("push_to_hub"):  # before any work: the repo id of each stage that will be pushed
        for stage in ("teacher", "student"):
            if stage in stages and not getattr(recipe, f"{stage}_repo_id"):
                raise ValueError(f"--push_to_hub needs --{stage}_repo_id (user_or_org/name)")
        if len(students) > 1:
            raise ValueError("--push_to_hub with a --sweep: push the student you choose afterwards with dive-hf push")
    batch = resolve_batch(recipe, training, int(os.environ.get("WORLD_SIZE", "1")))
    main_process = int(os.environ.get("RANK", "0")) == 0
    say = log if main_process else (lambda *a, **k: None)
    output_dir = Path(training["output_dir"])
    teacher = (str(output_dir / "teacher") if "teacher" in stages
               else training.get("teacher_model_name_or_path") or str(output_dir / "teacher"))
    plans = plan_stages(stages, output_dir, students, teacher, training.get("resume_from_checkpoint"),
                        recipe.overwrite)
    check_model_specs(recipe, training, stages)  # architectures and initial weights, before any loading
    for plan in plans:  # every flag of every stage is validated here, before any data or model is loaded
        _config_for(plan, training, recipe, teacher)
    if training.get("load_best_model_at_end") and not (data.val_list or data.val_split):
        raise ValueError("load_best_model_at_end selects a checkpoint by its evaluation: give a validation split "
                         "(--val_list / --val_split), or the reported test numbers would be biased by the selection")
    say(describe_effective_batch(batch))
    with output_lock(output_dir, enabled=main_process):
        results = _run_plans(plans, recipe, data, training, batch, teacher, say, main_process)
    results["wall_time_s"] = round(time.time() - start, 1)
    results["main_process"] = main_process
    results["folders"] = [str(plan.folder) for plan in plans]
    if main_process:
        summary = output_dir / "results.json"
        merged = read_json_object(summary) or {}  # rows of earlier launches are kept
        rows = {plan.name: results[plan.name] for plan in plans}
        write_json(summary, {**merged, **rows,
                              "wall_time_s": results["wall_time_s"], "batch": batch})
    return results


def _run_plans(plans, recipe, data, training, batch, teacher, say, main_process) -> dict:
    import torch

    from .data.long_tail import class_counts, shot_groups
    from .data.transforms import attach_transform, model_transform
    from .report import format_results
    from .trainer.arguments import prepare_model
    from .trainer import BalancedSoftmaxTrainer, CrossEntropyTrainer, DiVETrainer
    from .virtual_examples import format_training_fit, format_virtual_examples, teacher_report, write_virtual_examples

    train_raw, eval_raw = load_splits(data)
    if train_raw is None:
        raise ValueError("the recipe needs a training split: --dataset, --train_list or --inat_train_json")
    label_column, image_column = data.split_label_column, data.split_image_column
    label_names = train_raw.features[label_column].names

    def prepare(split, model, augment: bool):
        """The split as the model takes it: on the device (--device_data) or transformed on the fly."""
        if recipe.device_data:
            return device_split(split, model, augment, image_column, label_column, training.get("seed", 42))
        return attach_transform(split, model_transform(model, train=augment, uint8=True), image_column, label_column)

    val_raw = load_val_split(data, label_names)
    splits = SplitsByPreprocessing(prepare, train_raw, eval_raw, val_raw, recipe.train_augmentation)
    steps_per_epoch = math.ceil(math.ceil(len(train_raw) / (batch["per_device"] * batch["world_size"]))
                                / batch["accumulation"])
    has_periodic = val_raw is not None or eval_raw is not None
    for what, every in (("eval", recipe.eval_every_epochs if has_periodic else None),
                        ("save", recipe.save_every_epochs)):
        if every:
            training.update({f"{what}_strategy": "steps", f"{what}_steps": max(1, round(every * steps_per_epoch))})
        elif every == 0:  # --save_every_epochs 0 / --eval_every_epochs 0: never
            training[f"{what}_strategy"] = "no"
    run_config = {"recipe": vars(recipe), "data": vars(data), "batch": batch}
    trainers = {"baseline": CrossEntropyTrainer, "teacher": BalancedSoftmaxTrainer,
                "student_bsce": BalancedSoftmaxTrainer, "student": DiVETrainer}

    results, report = {}, None
    for plan in plans:
        args = _config_for(plan, training, recipe, teacher)
        replaced = plan.folder.with_name(plan.folder.name + ".previous")
        if plan.action == "train" and recipe.overwrite and main_process and plan.folder.exists():
            # the old folder waits aside until the new one is complete: a failed or killed replacement loses nothing
            if replaced.exists() and folder_state(plan.folder) != "complete":
                shutil.rmtree(plan.folder)  # an earlier replacement that failed; the complete one stays aside
                say(f"{plan.name}: --overwrite: retrying the replacement of {replaced} (kept until this one is "
                    f"complete)")
            else:
                if replaced.exists():
                    shutil.rmtree(replaced)
                plan.folder.rename(replaced)
                say(f"{plan.name}: --overwrite: replacing {plan.folder} (the old one waits in {replaced} until the "
                    f"new one is complete)")
        if plan.action == "evaluate":  # trained earlier; only its evaluation is missing
            from .hub import load_stage_model

            model, config = load_stage_model(str(plan.folder))
            model.dive_initial_weights = (config.get("dive") or {}).get("initial_weights") or {
                "source": "not recorded"}  # a folder trained before dive_hf recorded it
        else:  # the stage's architecture and initial weights (seeded as the trainer would)
            model = prepare_model(model_spec(recipe, training, plan.kind).arch, args, len(label_names), label_names)
        train, test, val = splits.for_model(model)
        periodic = val if val is not None else test  # periodic evaluation (and model selection) on val when given
        trainer = trainers[plan.kind](model=model, args=args, train_dataset=train, eval_dataset=periodic,
                                      label_column=label_column, run_config=run_config)
        del model
        if plan.action == "skip":
            # built as if to train it: a complete folder is reused only if trained with this launch's settings
            # (those a resume compares) and, for a student, from the teacher it is shown beside
            trainer.check_reuse(plan.folder)
            _check_recorded_split(plan.folder, test)
            del trainer
            say(f"{plan.name}: {plan.folder} is complete; not training it again (--resume_from_checkpoint)")
            results[plan.name] = _recorded_metrics(plan.folder)
            if args.push_to_hub and main_process:  # a push that failed last time is retried (unchanged files skip)
                from .hub import push_folder

                push_folder(plan.folder, args.hub_model_id, private=bool(args.hub_private_repo), token=args.hub_token)
            continue
        if plan.kind == "student" and recipe.virtual_examples and main_process and plan.action != "evaluate":
            if report is None:  # the teacher's logits once, for every (τ, p) of the launch
                taus = sorted({p.temperature for p in plans if p.kind == "student"})
                powers = sorted({p.power for p in plans if p.kind == "student"})
                with torch.random.fork_rng(devices=[]), stop_on_signal(  # must not shift the student's augmentation
                        "the virtual-example pass, before training", _record_stop(trainer, "continue", False)):
                    report = teacher_report(
                        trainer.teacher.model, train_raw, taus, powers, args.many_shot_threshold,
                        args.few_shot_threshold, batch_size=args.per_device_eval_batch_size, device=str(args.device),
                        num_workers=args.dataloader_num_workers, label_column=label_column,
                        image_column=image_column, progress=not args.disable_tqdm)
                results["virtual_examples"] = report
            teacher_name = model_spec(recipe, training, "teacher").label(short=True)
            write_virtual_examples(_virtual_example_rows(report, plan.temperature, plan.power), plan.folder,
                                   title=f"Virtual examples of the teacher ({teacher_name}) at "
                                         f"τ={plan.temperature:g}, p={plan.power:g}, vs real training images")
        if plan.action == "evaluate":
            say(f"{plan.name}: {plan.folder} finished training; evaluating it (--resume_from_checkpoint)")
            trainer.check_evaluate_again(plan.folder)  # its weights were trained with these settings (or refuse)
            trainer.restore_step_count()
        else:
            if plan.action == "resume":
                say(f"{plan.name}: resuming from {plan.checkpoint}")
            trainer.train(resume_from_checkpoint=plan.checkpoint)
            trainer.save_trained()  # the final weights are safe before the final evaluation runs
        with stop_on_signal("the final evaluation", _record_stop(trainer, "evaluate the saved weights", True)):
            results[plan.name] = (trainer.final_evaluation(test if val is not None else None) if test is not None
                                  else {})
            trainer.save_model()
        if plan.kind == "teacher" and main_process and not (recipe.virtual_examples and any(
                p.kind == "student" and p.action in ("train", "resume") for p in plans)):
            # no virtual-example pass will report it: the teacher's fit to its training set, the first diagnostic
            with torch.random.fork_rng(devices=[]):
                results["training_fit"] = teacher_report(
                    trainer.accelerator.unwrap_model(trainer.model), train_raw, [], [], args.many_shot_threshold,
                    args.few_shot_threshold, batch_size=args.per_device_eval_batch_size, device=str(args.device),
                    num_workers=args.dataloader_num_workers, label_column=label_column, image_column=image_column,
                    progress=not args.disable_tqdm)["training_fit"]
        del trainer
        if main_process and replaced.exists() and recipe.overwrite:
            shutil.rmtree(replaced)

    args = _config_for(plans[0], training, recipe, teacher)
    counts = class_counts(train_raw, label_column)
    groups = shot_groups(counts, args.many_shot_threshold, args.few_shot_threshold)
    students = [p for p in plans if p.kind == "student"]
    specs = {kind: model_spec(recipe, training, kind) for kind in ("teacher", "student")}
    teacher_model, student_model = specs["teacher"].label(), specs["student"].label()
    two_models = not specs["teacher"].same_model(specs["student"])
    models = f"{teacher_model} teacher → {student_model}" if two_models else student_model
    title = (f"{models} on {data.dataset or data.train_list or data.inat_train_json}"
             + (f", τ={students[0].temperature:g} p={students[0].power:g} α={training.get('alpha', 0.5):g}"
                if len(students) == 1 else "")
             + (f"; evaluated on {len(eval_raw):,} images" if eval_raw is not None else "; no evaluation split"))

    def row(plan: StagePlan) -> str:  # which model a row is, when the teacher is another one
        if not two_models:
            return plan.label
        model = specs["teacher" if plan.kind == "teacher" else "student"].label(short=True)
        return f"{plan.label[:-1]}, {model})" if plan.label.endswith(")") else f"{plan.label} ({model})"

    rows = {row(p): results[p.name] for p in plans}
    if students and "teacher" not in {p.kind for p in plans} and eval_raw is not None:
        # the students' teacher, trained by an earlier launch: its own evaluation of this split, when it has one
        from .teacher import teacher_eval_results

        recorded = teacher_eval_results(teacher, getattr(eval_raw, "_fingerprint", None), args.many_shot_threshold,
                                        args.few_shot_threshold)
        if recorded:
            label = "teacher (BSCE" + (f", {specs['teacher'].label(short=True)}" if two_models else "") + ", recorded)"
            rows = {label: recorded["metrics"], **rows}
    results["table"] = format_results(rows, counts, groups,
                                      args.many_shot_threshold, args.few_shot_threshold, title)
    if report is not None:
        results["table"] += "\n\n" + format_virtual_examples(report)
    elif format_training_fit(results.get("training_fit")):
        results["table"] += "\n\n" + format_training_fit(results["training_fit"])
    return results


def _record_stop(trainer, then: str, trained: bool):
    """What :func:`~dive_hf.preemption.stop_on_signal` does on a signal outside the training loop: the run log says
    ``interrupted`` (with ``trained`` when the final weights are saved, so that a resume only evaluates)."""
    return lambda message: trainer.write_run_log(
        "interrupted", error=f"{message}; {then} with --resume_from_checkpoint last", **({"trained": True} if trained
                                                                                           else {}))


def _check_recorded_split(folder: Path, test) -> None:
    """A complete folder's recorded numbers are shown only under a table of the same evaluation split (the images
    before preprocessing; a folder written before that was recorded: the split as its model saw it)."""
    recorded = ((read_json_object(folder / "eval_results.json") or {}).get("dataset") or {})
    if test is None or not recorded:
        return
    split = getattr(test, "source", test)  # DeviceImages wraps the datasets split
    if "eval_source_fingerprint" in recorded:
        same = recorded["eval_source_fingerprint"] == getattr(split, "source_fingerprint", split._fingerprint)
    else:
        same = recorded.get("eval_fingerprint") in (None, split._fingerprint)
    if not same:
        raise ValueError(f"{folder} is complete, but its numbers are of another evaluation split "
                         f"({recorded.get('eval_split')!r}, {recorded.get('eval_size')} images) than this launch's "
                         f"({len(test):,} images): evaluate it there with dive-hf evaluate {folder} --eval_split ..., "
                         f"or drop the data flags that changed")


def _recorded_metrics(folder: Path) -> dict:
    report = folder / "eval_results.json"
    return json.loads(report.read_text()).get("metrics", {}) if report.is_file() else {}
