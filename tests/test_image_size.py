"""Any timm student at any resolution (--image_size), and a teacher that always sees its own input size."""
import json

import numpy as np
import pytest
import torch

from conftest import stage_kwargs


def test_resnet18_at_64_px_trains_saves_and_reloads_at_64_px(tmp_path, tiny_data, capsys):
    import timm
    from transformers import AutoModelForImageClassification

    from dive_hf.quickstart import main

    out = tmp_path / "run"
    code = main(["--dataset", "embedded:tiny", "--arch", "resnet18", "--image_size", "64", "--stage", "teacher",
                 "--max_steps", "2", "--per_device_train_batch_size", "8", "--disable_tqdm", "true",
                 "--many_shot_threshold", "20", "--few_shot_threshold", "8", "--output_dir", str(out)])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "teacher" / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 64, 64]
    model = timm.create_model(f"local-dir:{out / 'teacher'}", pretrained=True).eval()
    data_config = timm.data.resolve_data_config({}, model=model)
    assert data_config["input_size"] == (3, 64, 64)
    x = torch.randn(2, 3, 64, 64)
    wrapped = AutoModelForImageClassification.from_pretrained(out / "teacher").eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x).logits, model(x), rtol=1e-4, atol=1e-4)


def test_a_32_px_teacher_sees_its_own_view_of_a_64_px_students_batch(two_stage_run, tiny_data):
    """The student's eval transform at 64 px upsamples the 32-px images; the frozen teacher resizes them back and
    gives (within interpolation tolerance) the logits of its own 32-px transform."""
    import timm

    from dive_hf.data.transforms import model_transform
    from dive_hf.models import create_timm_model
    from dive_hf.teacher import FrozenTeacher

    teacher = timm.create_model(f"local-dir:{two_stage_run['root'] / 'teacher'}", pretrained=True).eval()
    student = create_timm_model("resnet20_cifar", 10, image_size=64)
    cfg = student.pretrained_cfg
    frozen = FrozenTeacher(teacher, cfg["mean"], cfg["std"], cfg["input_size"])
    assert frozen.resize_to == (32, 32)
    images = [tiny_data["test"][i]["image"].convert("RGB") for i in range(16)]
    student_view = torch.stack([model_transform(student, train=False)(im) for im in images])
    teacher_view = torch.stack([model_transform(teacher, train=False)(im) for im in images])
    assert student_view.shape[-1] == 64 and teacher_view.shape[-1] == 32
    seen = []
    hook = teacher.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    unresized = FrozenTeacher(teacher, cfg["mean"], cfg["std"])  # what happened before: the student's 64-px pixels
    with torch.no_grad():
        own = teacher(teacher_view)
        through_student = frozen(student_view)
        control = unresized(student_view)
    hook.remove()
    assert seen[1].shape == teacher_view.shape  # the teacher got 32-px inputs
    std = torch.tensor(teacher.pretrained_cfg["std"]).view(1, 3, 1, 1)
    pixel_error = ((seen[1] - teacher_view) * std).abs().mean()  # in [0, 1] pixel units
    assert pixel_error < 0.03, pixel_error  # up- then down-sampling: interpolation only
    error, control_error = ((through_student - own).abs().mean(), (control - own).abs().mean())
    assert error < control_error / 2, (error, control_error)  # and the resize is what brings it to the teacher's view
    same_size = FrozenTeacher(teacher, cfg["mean"], cfg["std"], teacher.pretrained_cfg["input_size"])
    assert same_size.resize_to is None


def test_image_size_is_validated():
    from dive_hf import BalancedSoftmaxConfig

    with pytest.raises(ValueError, match="image_size=4"):
        BalancedSoftmaxConfig(**stage_kwargs("x", image_size=4))
