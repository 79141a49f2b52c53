"""Weak input (issue 24): each bad flag, list file, dataset column or checkpoint file gives ONE line naming the flag
or the file (exit code 2), before any data is loaded or any folder is created where the input allows it."""
import json
import logging
import os

import pytest

from conftest import stage_kwargs


def _quickstart(argv, capsys):
    from dive_hf.quickstart import main

    code = main(argv, prog="quickstart.py")
    out, err = capsys.readouterr()
    return code, out, err


# ---- flags: refused before the data is loaded and before the output folder exists -----------------------------------
@pytest.mark.parametrize("flags, culprit", [
    (["--imbalance_factor", "nan"], "imbalance_factor=nan"),
    (["--imbalance_factor", "inf"], "imbalance_factor=inf"),
    (["--num_train_epochs", "nan"], "num_train_epochs=nan"),
    (["--num_train_epochs", "0"], "num_train_epochs=0"),
    (["--num_train_epochs", "-1"], "num_train_epochs=-1"),
    (["--num_train_epochs", "inf"], "num_train_epochs=inf"),
    (["--global_batch_size", "0"], "--global_batch_size 0"),
    (["--global_batch_size", "-4"], "--global_batch_size -4"),
    (["--lr_reference_batch", "0"], "--lr_reference_batch 0"),
    (["--eval_every_epochs", "-1"], "--eval_every_epochs -1"),
    (["--per_device_eval_batch_size", "0"], "per_device_eval_batch_size=0"),
    (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps=0"),
    (["--learning_rate", "nan"], "learning_rate=nan"),
    (["--weight_decay", "inf"], "weight_decay=inf"),
    (["--push_to_hub", "true", "--teacher_repo_id", "bad/id/x", "--student_repo_id", "me/s"],
     "--teacher_repo_id 'bad/id/x'"),
    (["--push_to_hub", "true", "--teacher_repo_id", "me/t", "--student_repo_id", "me//s"],
     "--student_repo_id 'me//s'"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_flags_are_one_line_before_data_and_folders(tmp_path, capsys, flags, culprit):
    out = tmp_path / "out"
    argv = ["--dataset", str(tmp_path / "no-such-dataset"), "--output_dir", str(out), *flags]
    code, _, err = _quickstart(argv, capsys)
    assert code == 2 and culprit in err, err
    assert "no-such-dataset" not in err and "Traceback" not in err and "hub_model_id" not in err
    assert err.count("\n") == 1
    assert not out.exists()  # no (empty) output folder left behind


def test_zero_epochs_are_accepted_with_max_steps(tmp_path):
    """``max_steps > 0`` sets the training length: the epochs are not used then."""
    from dive_hf import BalancedSoftmaxConfig

    args = BalancedSoftmaxConfig(**stage_kwargs(tmp_path, max_steps=2, num_train_epochs=0))
    assert args.max_steps == 2
    with pytest.raises(ValueError, match="num_train_epochs=0"):
        BalancedSoftmaxConfig(**stage_kwargs(tmp_path, max_steps=-1, num_train_epochs=0))
    with pytest.raises(ValueError, match="num_train_epochs=nan"):  # NaN is never a length
        BalancedSoftmaxConfig(**stage_kwargs(tmp_path, max_steps=2, num_train_epochs=float("nan")))


@pytest.mark.parametrize("global_batch, reference, culprit", [(0, None, "global_batch_size=0"),
                                                               (128, 0, "lr_reference_batch=0")])
def test_a_recipe_yaml_with_a_zero_batch_is_refused(tmp_path, global_batch, reference, culprit):
    """``from_recipe`` (the Python API over a YAML recipe) says the same as the flags."""
    from dive_hf import BalancedSoftmaxConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"global_batch_size: {global_batch}\n" + (f"lr_reference_batch: {reference}\n"
                                                                if reference is not None else ""))
    with pytest.raises(ValueError, match=culprit):
        BalancedSoftmaxConfig.from_recipe(str(recipe), output_dir=str(tmp_path / "out"))


# ---- issue 25: a warm-up longer than the training ---------------------------------------------------------------
def test_a_warmup_longer_than_the_training_is_warned_once(tmp_path, caplog):
    from dive_hf import BalancedSoftmaxConfig, DiVEConfig
    from dive_hf import config

    config._WARNED_WARMUP.clear()
    kwargs = stage_kwargs(tmp_path, max_steps=-1, num_train_epochs=3, warmup_epochs=5)
    with caplog.at_level(logging.WARNING, logger="dive_hf.config"):
        BalancedSoftmaxConfig(**kwargs)
        DiVEConfig(**kwargs)  # the recipe runner builds a stage's config several times: one warning
    warnings = [r for r in caplog.records if "warm-up never finishes" in r.getMessage()]
    assert len(warnings) == 1 and "warmup_epochs=5" in warnings[0].getMessage()
    assert "num_train_epochs=3" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dive_hf.config"):
        BalancedSoftmaxConfig(**{**kwargs, "warmup_epochs": 3})  # finishes at the last step
        BalancedSoftmaxConfig(**{**kwargs, "max_steps": 10})  # epochs unknown before the data
    assert "warm-up never finishes" not in caplog.text


# ---- split lists ----------------------------------------------------------------------------------------------------
@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "root"
    for name in ("a/1.jpg", "a/2.jpg", "b/3.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not decoded: only existence is checked")
    return root


def _make_list(tmp_path, case: str):
    path = tmp_path / "train.txt"
    if case == "duplicate":
        path.write_text("a/1.jpg 0\nb/3.jpg 1\na/1.jpg 0\n")
    elif case == "two labels":
        path.write_text("a/1.jpg 0\na/2.jpg 1\n./a/1.jpg 1\n")
    elif case == "full-width digit":
        path.write_text("a/1.jpg 0\na/2.jpg \uff13\n", encoding="utf-8")
    elif case == "underscore":
        path.write_text("a/1.jpg 0\na/2.jpg 1_0\n")
    elif case == "symlink loop":
        os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
        os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
        return tmp_path / "loop_a"
    elif case == "dangling symlink":
        os.symlink(tmp_path / "gone.txt", path)
    elif case == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize("case, error, match", [
    ("duplicate", ValueError, r"train\.txt: image 'a/1\.jpg' is listed 2 times: line 1 \(label 0\), line 3 \(label 0\)"
                              r" — it would count more than once"),
    ("two labels", ValueError, r"train\.txt: image 'a/1\.jpg' is listed 2 times: line 1 \(label 0\), line 3 "
                               r"\(label 1\) — with different labels"),
    ("full-width digit", ValueError, r"train\.txt:2: label '\uff13' is not an integer written with the ASCII digits"),
    ("underscore", ValueError, r"train\.txt:2: label '1_0' is not an integer"),
    ("symlink loop", ValueError, r"split file .*loop_a is a symbolic-link loop"),
    ("dangling symlink", FileNotFoundError,
     r"split file .*train\.txt is a symbolic link to .*gone\.txt.*does not exist"),
    ("folder", IsADirectoryError, r"split file .*train\.txt is a folder, not a file"),
])
def test_bad_split_lists_name_the_file_the_lines_and_the_image(tmp_path, image_root, case, error, match):
    from dive_hf.data.split_list import load_split_list

    with pytest.raises(error, match=match):
        load_split_list(_make_list(tmp_path, case), image_root, cache_dir=tmp_path / "cache")


def test_an_image_root_that_is_a_symlink_loop_is_named(tmp_path, image_root):
    from dive_hf.data.split_list import load_split_list

    (tmp_path / "train.txt").write_text("a/1.jpg 0\n")
    os.symlink(tmp_path / "r2", tmp_path / "r1")
    os.symlink(tmp_path / "r1", tmp_path / "r2")
    with pytest.raises(ValueError, match=r"image root .*r1 is a symbolic-link loop"):
        load_split_list(tmp_path / "train.txt", tmp_path / "r1", cache_dir=tmp_path / "cache")


def test_a_duplicated_list_line_is_one_line_from_the_recipe(tmp_path, image_root, capsys):
    argv = ["--dataset", "", "--train_list", str(_make_list(tmp_path, "two labels")), "--image_root",
            str(image_root), "--output_dir", str(tmp_path / "out"), "--stage", "teacher"]
    code, _, err = _quickstart(argv, capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "train.txt: image 'a/1.jpg' is listed 2 times" in err and "line 3 (label 1)" in err


# ---- a datasets image column of strings -----------------------------------------------------------------------------
@pytest.fixture
def string_image_dataset(tmp_path):
    import datasets

    features = datasets.Features({"image": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["a", "b"])})
    split = datasets.Dataset.from_dict({"image": ["x/1.png", "x/2.png", "x/3.png"], "label": [0, 0, 1]},
                                       features=features)
    folder = tmp_path / "paths_ds"
    datasets.DatasetDict(train=split, test=split).save_to_disk(str(folder))
    return folder


def test_an_image_column_of_strings_is_named_with_the_fix(string_image_dataset, tmp_path, capsys):
    from dive_hf.data.sources import DataArguments, load_splits

    with pytest.raises(ValueError, match=r"dataset '.*paths_ds', split 'train': image column 'image' holds strings "
                                         r"\(file paths\?\).*cast_column\('image', datasets\.Image\(\)\)"):
        load_splits(DataArguments(dataset=str(string_image_dataset)))
    code, _, err = _quickstart(["--dataset", str(string_image_dataset), "--output_dir", str(tmp_path / "out"),
                                "--stage", "teacher"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "image column 'image' holds strings" in err and "string indices" not in err


def test_an_undeclared_image_struct_is_accepted(tmp_path):
    """A column of {bytes, path} structs (an Image feature whose type was lost) decodes like one: not refused."""
    import datasets

    from dive_hf.data.sources import check_image_column

    split = datasets.Dataset.from_dict({"image": [{"bytes": b"x", "path": "1.png"}], "label": [0]})
    check_image_column(split, "image", "ds")


# ---- damaged checkpoint files ---------------------------------------------------------------------------------------
def _checkpoint(folder, step: int):
    """A checkpoint folder with the files the Trainer writes (small but real: safetensors, torch.save zip)."""
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"fc.weight": torch.randn(64, 64), "fc.bias": torch.zeros(64)}, str(path / "model.safetensors"))
    torch.save({"state": {0: {"momentum_buffer": torch.randn(64, 64)}}, "param_groups": [{"lr": 0.1}]},
               path / "optimizer.pt")
    torch.save({"python": (3, (1, 2), None), "cpu": torch.random.get_rng_state()}, path / "rng_state.pth")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("name, damage, reason", [
    ("model.safetensors", _truncate, r"truncated: its tensors need [\d,]+ bytes, the file has [\d,]+"),
    ("optimizer.pt", _truncate, r"truncated or garbled: not a complete zip archive"),
    ("rng_state.pth", lambda p: p.write_bytes(b"garbage, not a torch file" * 10), r"not a file written by torch\.save"),
    ("scheduler.pt", lambda p: p.write_bytes(p.read_bytes()[:-30]), r"truncated or garbled"),
])
def test_a_damaged_checkpoint_file_is_named_with_the_earlier_checkpoint(tmp_path, name, damage, reason):
    from dive_hf.checkpoint_files import DamagedCheckpointError, check_checkpoint_files, damaged_file

    earlier, last = _checkpoint(tmp_path, 2), _checkpoint(tmp_path, 4)
    assert damaged_file(earlier) is None and damaged_file(last) is None
    damage(last / name)
    with pytest.raises(DamagedCheckpointError, match=rf"checkpoint file .*checkpoint-4/{name} is damaged \({reason}"
                                                     rf".*resume from the earlier checkpoint .*checkpoint-2"):
        check_checkpoint_files(last)
    damage(earlier / name)  # no intact earlier checkpoint left
    with pytest.raises(DamagedCheckpointError, match="no earlier intact checkpoint"):
        check_checkpoint_files(last)


def test_a_flipped_byte_in_a_small_torch_file_fails_its_crc(tmp_path):
    from dive_hf.checkpoint_files import damaged_file

    path = _checkpoint(tmp_path, 2)
    data = bytearray((path / "optimizer.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the momentum tensor: the zip structure is intact
    (path / "optimizer.pt").write_bytes(bytes(data))
    found = damaged_file(path)
    assert found is not None and found[0].name == "optimizer.pt" and "CRC" in found[1]


def test_resuming_a_damaged_checkpoint_is_one_line_before_the_data(tmp_path, capsys):
    out = tmp_path / "run"
    _checkpoint(out / "teacher", 2)
    last = _checkpoint(out / "teacher", 4)
    _truncate(last / "model.safetensors")
    argv = ["--dataset", str(tmp_path / "no-such-dataset"), "--output_dir", str(out), "--stage", "teacher",
            "--resume_from_checkpoint", "last"]
    code, _, err = _quickstart(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and "no-such-dataset" not in err
    assert f"checkpoint file {last / 'model.safetensors'} is damaged" in err
    assert f"--resume_from_checkpoint {out / 'teacher' / 'checkpoint-2'}" in err


def test_the_trainer_api_checks_the_checkpoint_files_too(tmp_path, tiny_splits):
    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer
    from dive_hf.checkpoint_files import DamagedCheckpointError

    checkpoint = _checkpoint(tmp_path / "out", 4)
    (checkpoint / "rng_state.pth").write_bytes(b"\x80garbled pickle")
    args = BalancedSoftmaxConfig(**stage_kwargs(tmp_path / "out"))
    trainer = BalancedSoftmaxTrainer(model="resnet20_cifar", args=args, train_dataset=tiny_splits[1])
    with pytest.raises(DamagedCheckpointError, match=r"rng_state\.pth is damaged \(torch\.load\(weights_only=True\)"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
