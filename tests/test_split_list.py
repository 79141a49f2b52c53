"""OLTR list files and iNaturalist JSON as datasets: exact content, caching, determinism and every bad input."""
import json
import subprocess
import sys

import datasets
import numpy as np
import pytest

from dive_hf.data import attach_transform, cifar_transform, class_counts, make_long_tailed
from dive_hf.data.split_list import SPLIT_SOURCE_KEY, load_inat_json, load_split_list

from conftest import write_image, write_imagenet_lt

COUNTS = [6, 4, 2, 1]
SYNSETS = ["n01440764", "n01443537", "n01484850", "n01491361"]


@pytest.fixture
def imagenet_lt(tmp_path):
    """ImageNet-LT layout: root/train/<synset>/*.JPEG, root/val/..., and OLTR list files."""
    return write_imagenet_lt(tmp_path, COUNTS, SYNSETS)


def test_list_split_content(imagenet_lt, tmp_path):
    lists, root = imagenet_lt
    train = load_split_list(lists / "ImageNet_LT_train.txt", root, cache_dir=tmp_path / "cache")
    assert isinstance(train.features["image"], datasets.Image)
    assert train.features["label"].names == SYNSETS  # inferred from the class folders
    assert class_counts(train) == COUNTS and len(train) == 13
    raw = train.cast_column("image", datasets.Image(decode=False))[0]["image"]
    assert raw["bytes"] is None and raw["path"] == str(root / "train" / SYNSETS[0] / f"{SYNSETS[0]}_0.JPEG")
    assert train[0]["image"].size == (12, 12)
    provenance = json.loads(train.info.description)[SPLIT_SOURCE_KEY]
    assert provenance["images"] == 13 and provenance["kind"] == "list"
    test = load_split_list(lists / "ImageNet_LT_test.txt", root, class_names=train.features["label"].names,
                           cache_dir=tmp_path / "cache")
    assert class_counts(test) == [2, 2, 2, 2] and test.features["label"].names == SYNSETS


def test_list_split_is_cached_and_deterministic_across_processes(imagenet_lt, tmp_path):
    lists, root = imagenet_lt
    cache = tmp_path / "cache"
    first = load_split_list(lists / "ImageNet_LT_train.txt", root, cache_dir=cache)
    again = load_split_list(lists / "ImageNet_LT_train.txt", root, cache_dir=cache)
    assert again._fingerprint == first._fingerprint
    assert len(list((cache / "splits").iterdir())) == 1
    code = ("import sys; from dive_hf.data.split_list import load_split_list; "
            "ds = load_split_list(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3]); "
            "print(ds._fingerprint, list(ds['label']))")
    out = subprocess.run([sys.executable, "-c", code, str(lists / "ImageNet_LT_train.txt"), str(root), str(cache)],
                         capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert out[0] == first._fingerprint and json.loads(out[1]) == list(first["label"])
    # a changed list is a different cache entry
    with open(lists / "ImageNet_LT_train.txt", "a") as f:
        f.write(f"train/{SYNSETS[3]}/{SYNSETS[3]}_0.JPEG 3\n")
    assert class_counts(load_split_list(lists / "ImageNet_LT_train.txt", root, cache_dir=cache))[3] == 2


def test_inat_json(tmp_path):
    root = tmp_path / "inat"
    images, annotations = [], []
    for i, category in enumerate([0, 0, 0, 1, 2, 2]):
        rel = f"train_val2018/Plantae/{category}/{i}.jpg"
        write_image(root / rel, i)
        images.append({"id": 100 + i, "file_name": rel})
        annotations.append({"id": i, "image_id": 100 + i, "category_id": category})
    categories = [{"id": 0, "name": "Abies"}, {"id": 1, "name": "Acer"}, {"id": 2, "name": "Quercus"}]
    path = tmp_path / "train2018.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    ds = load_inat_json(path, root, cache_dir=tmp_path / "cache")
    assert ds.features["label"].names == ["Abies", "Acer", "Quercus"]
    assert class_counts(ds) == [3, 1, 2]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": []}))
    with pytest.raises(ValueError, match=r"images\[0\] \(id=1\): needs a 'file_name' and an annotation"):
        load_inat_json(broken, root, cache_dir=tmp_path / "cache")


def _write_list(tmp_path, lines):
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("lines, error, match", [
    (["train/n01440764/n01440764_0.JPEG 0", "train/n01440764/missing.JPEG 0", "train/gone.JPEG 1"],
     FileNotFoundError, r"bad.txt:2: image 'train/n01440764/missing.JPEG' not found under .* \(and 1 more missing\)"),
    (["train/n01440764/n01440764_0.JPEG 0", "just-a-path"], ValueError, r"bad.txt:2: expected 'relative/path label'"),
    (["train/n01440764/n01440764_0.JPEG zero"], ValueError, r"bad.txt:1: label 'zero' is not an integer"),
    ([""], ValueError, "has no entries"),
])
def test_bad_lists_name_file_and_line(imagenet_lt, tmp_path, lines, error, match):
    _, root = imagenet_lt
    with pytest.raises(error, match=match):
        load_split_list(_write_list(tmp_path, lines), root, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "splits").exists() or not any(
        p for p in (tmp_path / "cache" / "splits").iterdir() if not p.name.startswith("."))


def test_label_out_of_range(imagenet_lt, tmp_path):
    _, root = imagenet_lt
    path = _write_list(tmp_path, ["train/n01440764/n01440764_0.JPEG 0", "train/n01440764/n01440764_1.JPEG 7"])
    with pytest.raises(ValueError, match=r"bad.txt:2: label 7 is outside \[0, 4\)"):
        load_split_list(path, root, class_names=SYNSETS, cache_dir=tmp_path / "cache")


def test_missing_list_and_root(imagenet_lt, tmp_path):
    lists, root = imagenet_lt
    with pytest.raises(FileNotFoundError, match="split file .*nope.txt not found"):
        load_split_list(tmp_path / "nope.txt", root, cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="image root .*no_root is not a folder"):
        load_split_list(lists / "ImageNet_LT_train.txt", tmp_path / "no_root", cache_dir=tmp_path / "cache")


def test_truncatedwrite_image(imagenet_lt, tmp_path):
    lists, root = imagenet_lt
    victim = root / "train" / SYNSETS[1] / f"{SYNSETS[1]}_2.JPEG"
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(OSError, match=rf"ImageNet_LT_train.txt:9: cannot decode image .*{victim.name}"):
        load_split_list(lists / "ImageNet_LT_train.txt", root, verify_images=True, cache_dir=tmp_path / "c1")
    kept = load_split_list(lists / "ImageNet_LT_train.txt", root, skip_corrupt=True, cache_dir=tmp_path / "c2")
    assert len(kept) == 12 and json.loads(kept.info.description)[SPLIT_SOURCE_KEY]["skipped_corrupt"] == 1
    # default: not decoded at build time, but the first use names the file
    lazy = load_split_list(lists / "ImageNet_LT_train.txt", root, cache_dir=tmp_path / "c3")
    transformed = attach_transform(lazy, cifar_transform((0.5,) * 3, (0.5,) * 3, train=False, size=12))
    with pytest.raises(OSError, match=rf"cannot decode image .*{victim.name}"):
        transformed[8]


def test_interrupted_cache_build_leaves_nothing_trusted(imagenet_lt, tmp_path, monkeypatch):
    lists, root = imagenet_lt
    cache = tmp_path / "cache"

    original = datasets.Dataset.save_to_disk

    def crash(self, path, *args, **kwargs):  # the data is fully written, then the process "dies"
        original(self, path, *args, **kwargs)
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", crash)
    with pytest.raises(KeyboardInterrupt):
        load_split_list(lists / "ImageNet_LT_train.txt", root, cache_dir=cache)
    monkeypatch.setattr(datasets.Dataset, "save_to_disk", original)
    assert list((cache / "splits").iterdir()) == []  # the complete-looking temp folder was removed
    assert class_counts(load_split_list(lists / "ImageNet_LT_train.txt", root, cache_dir=cache)) == COUNTS


def test_empty_class_is_named(imagenet_lt, tmp_path):
    lists, root = imagenet_lt
    train = load_split_list(lists / "ImageNet_LT_train.txt", root, class_names=SYNSETS + ["n99999999"],
                            cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match=r"class 4 \('n99999999'\) has no training images"):
        class_counts(train, require_all=True)


def test_cifar_lt_sizes_on_a_100_class_pool():
    labels = np.repeat(np.arange(100), 500)
    pool = datasets.Dataset.from_dict({"fine_label": labels}, features=datasets.Features(
        {"fine_label": datasets.ClassLabel(num_classes=100)}))
    assert len(make_long_tailed(pool, 100, label_column="fine_label")) == 10_847
    assert len(make_long_tailed(pool, 50, label_column="fine_label")) == 12_608
    assert len(make_long_tailed(pool, 10, label_column="fine_label")) == 19_573


def test_data_command_on_an_imagenet_lt_copy(imagenet_lt, tmp_path, capsys):
    from dive_hf.cli import main

    lists, root = imagenet_lt
    png, summary = tmp_path / "counts.png", tmp_path / "summary.json"
    assert main(["data", "--train_list", str(lists / "ImageNet_LT_train.txt"), "--image_root", str(root),
                 "--many_shot_threshold", "4", "--few_shot_threshold", "2", "--plot", str(png),
                 "--json", str(summary)]) == 0
    out = capsys.readouterr().out
    assert "classes: 4   images: 13   per class: 6 → 1   imbalance factor: 6.0" in out
    assert "many > 4: 1 classes (6 images) · medium: 2 (6) · few < 2: 1 (1)" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(summary.read_text())["class_counts"] == COUNTS


def test_data_arguments_need_one_source():
    from dive_hf.data.sources import DataArguments

    with pytest.raises(ValueError, match="exactly one data source"):
        DataArguments()
    with pytest.raises(ValueError, match="--image_root is required with --train_list/--eval_list"):
        DataArguments(eval_list="x.txt")
    with pytest.raises(ValueError, match="exactly one data source"):
        DataArguments(dataset="embedded:tiny", train_list="x.txt", image_root=".")
    with pytest.raises(ValueError, match="imbalance_factor=0.5"):
        DataArguments(dataset="embedded:tiny", imbalance_factor=0.5)
