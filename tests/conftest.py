"""Shared fixtures. Everything runs offline: the Hub and dataset downloads are disabled for the whole session."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory):
    """Embedded data and evaluate caches live in a per-session folder, never in the user's home."""
    root = tmp_path_factory.mktemp("cache")
    os.environ["DIVE_HF_CACHE"] = str(root / "dive_hf")
    os.environ["HF_DATASETS_CACHE"] = str(root / "datasets")
    os.environ["HF_EVALUATE_CACHE"] = str(root / "evaluate")
    yield root


@pytest.fixture(scope="session")
def tiny_data(_isolated_caches):
    from dive_hf.data import load_embedded

    return load_embedded("tiny")


@pytest.fixture(scope="session")
def tiny_splits(tiny_data):
    """(long-tailed train, balanced test) of the tiny preset, transformed for 32-px CIFAR models."""
    import timm

    from dive_hf.data import attach_transform, make_long_tailed, model_transform

    train_raw = make_long_tailed(tiny_data["train"], 10)
    probe = timm.create_model("resnet20_cifar", num_classes=10)
    train = attach_transform(train_raw, model_transform(probe, train=True))
    test = attach_transform(tiny_data["test"], model_transform(probe, train=False))
    return train_raw, train, test


@pytest.fixture
def hub():
    """The local Hub test double (tests/hub_server.py) on a free port of 127.0.0.1."""
    from hub_server import LocalHub

    with LocalHub() as server:
        yield server


def write_image(path, seed, size: int = 12):
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path, format="JPEG")


def write_imagenet_lt(folder, counts, synsets=None, test_per_class: int = 2, size: int = 12):
    """A small copy in ImageNet-LT's layout: ``root/train/<synset>/*.JPEG``, ``root/val/*.JPEG`` and the OLTR lists
    ``ImageNet_LT_train.txt`` / ``ImageNet_LT_test.txt`` in ``folder``. Returns ``(folder, root)``."""
    root = folder / "imagenet"
    synsets = synsets or [f"n{1440764 + i:08d}" for i in range(len(counts))]
    train_lines, test_lines = [], []
    for label, (synset, count) in enumerate(zip(synsets, counts)):
        for k in range(count):
            rel = f"train/{synset}/{synset}_{k}.JPEG"
            write_image(root / rel, label * 100 + k, size)
            train_lines.append(f"{rel} {label}")
        for k in range(test_per_class):
            rel = f"val/ILSVRC2012_val_{label}{k}.JPEG"
            write_image(root / rel, 1000 + label * 10 + k, size)
            test_lines.append(f"{rel} {label}")
    (folder / "ImageNet_LT_train.txt").write_text("\n".join(train_lines) + "\n")
    (folder / "ImageNet_LT_test.txt").write_text("\n".join(test_lines) + "\n")
    return folder, root


def stage_kwargs(output_dir, **overrides):
    """Small, fast, deterministic TrainingArguments for CPU tests."""
    kwargs = dict(
        output_dir=str(output_dir), max_steps=4, per_device_train_batch_size=16, per_device_eval_batch_size=64,
        learning_rate=0.05, optim="sgd", optim_args="momentum=0.9", logging_steps=2, report_to="none",
        save_strategy="no", eval_strategy="no", seed=0, use_cpu=True, dataloader_pin_memory=False,
        disable_tqdm=True, many_shot_threshold=20, few_shot_threshold=8,
    )
    kwargs.update(overrides)
    return kwargs


@pytest.fixture(scope="session")
def two_stage_run(tmp_path_factory, tiny_splits):
    """A real teacher → student run on the tiny preset; returns the trainers and their output folders."""
    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer, DiVEConfig, DiVETrainer

    _, train, test = tiny_splits
    root = tmp_path_factory.mktemp("two_stage")
    t_args = BalancedSoftmaxConfig(**stage_kwargs(root / "teacher"))
    teacher = BalancedSoftmaxTrainer(model="resnet20_cifar", args=t_args, train_dataset=train, eval_dataset=test)
    teacher.train()
    teacher.evaluate()
    teacher.save_model()

    s_args = DiVEConfig(**stage_kwargs(root / "student", teacher_model_name_or_path=str(root / "teacher"),
                                       temperature=4.0, power=0.5, alpha=0.5))
    student = DiVETrainer(model="resnet20_cifar", args=s_args, train_dataset=train, eval_dataset=test)
    teacher_state = {k: v.clone() for k, v in student.teacher.model.state_dict().items()}
    modes = []

    from transformers import TrainerCallback

    class RecordTeacherMode(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            modes.append(student.teacher.training or student.teacher.model.training)

    student.add_callback(RecordTeacherMode())
    student.train()
    student.evaluate()
    student.save_model()
    return {"root": root, "teacher": teacher, "student": student, "teacher_state_before": teacher_state,
            "teacher_modes": modes}
