"""The file names of a stage folder, and the hash that identifies a file.

A leaf module (it imports nothing from ``dive_hf``): data, Hub I/O, evaluation, cards and the trainers all name the
same files, and take the names from here instead of from each other. The old homes re-export them
(``dive_hf.hub.CONFIG_NAME``, ``dive_hf.evaluation.PER_CLASS_PLOT_NAME``, ``dive_hf.run_log.RUN_LOG_NAME``, ...).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = [
    "CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME", "EVAL_RESULTS_NAME", "PER_CLASS_PLOT_NAME", "RUN_LOG_NAME",
    "TRAINING_ARGS_NAME", "TRAINING_CURVES_NAME", "TRAINER_STATE_NAME", "VIRTUAL_EXAMPLES_NAME", "HUB_FILES",
    "REQUIRED_HUB_FILES", "default_output_dir", "file_sha256", "model_folder_name",
]

CONFIG_NAME = "config.json"  # timm's save_for_hf config, with label_names and the dive block
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"  # the model card
EVAL_RESULTS_NAME = "eval_results.json"
PER_CLASS_PLOT_NAME = "per_class_accuracy.png"
RUN_LOG_NAME = "run_log.json"
TRAINING_ARGS_NAME = "training_args.json"
TRAINING_CURVES_NAME = "training_curves.png"  # loss parts, lr, many/medium/few over epochs
TRAINER_STATE_NAME = "trainer_state.json"  # the Trainer's state with its log history
VIRTUAL_EXAMPLES_NAME = "virtual_examples"  # .json / .png: the teacher's virtual examples at the student's (τ, p)

#: The files of a stage folder that go to the Hub (README "Publish to the Hub"), the first three required.
#: Nothing else is sent: no notes, credentials or other files left in the folder, no ``checkpoint-*/``.
HUB_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, EVAL_RESULTS_NAME, PER_CLASS_PLOT_NAME, TRAINING_ARGS_NAME,
             RUN_LOG_NAME, TRAINING_CURVES_NAME, TRAINER_STATE_NAME, f"{VIRTUAL_EXAMPLES_NAME}.json",
             f"{VIRTUAL_EXAMPLES_NAME}.png")
REQUIRED_HUB_FILES = HUB_FILES[:3]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (how a teacher or a list file is identified)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_folder_name(model: str) -> str:
    """The last part of a stage folder or Hub id (``me/dive-resnext50`` → ``dive-resnext50``)."""
    return Path(model.rstrip("/")).name


def default_output_dir(kind: str, model: str) -> Path:
    """Where a command writes about ``model`` when not told: ``outputs/<kind>/<model's folder name>``."""
    return Path("outputs") / kind / model_folder_name(model)
