"""OLTR list files and iNaturalist JSON as datasets: exact content, caching, determinism and every bad input."""
import json
import re
import subprocess
import sys
from pathlib import Path

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
    # a changed list is a different cache entry (a new image: one listed twice is refused)
    write_image(root / f"train/{SYNSETS[3]}/{SYNSETS[3]}_1.JPEG", 301)
    with open(lists / "ImageNet_LT_train.txt", "a") as f:
        f.write(f"train/{SYNSETS[3]}/{SYNSETS[3]}_1.JPEG 3\n")
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


# ---- absurd labels, encodings, paths outside the root, malformed iNat JSON ---------------------------------------
def _list_file(tmp_path, content: bytes, name="bad.txt"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _three_images(tmp_path):
    from conftest import write_image

    root = tmp_path / "images"
    for i in range(3):
        write_image(root / f"c{i}" / f"{i}.jpg", i)
    return root


def test_an_absurd_label_is_refused_without_building_its_classes(tmp_path):
    """Regression: `img.jpg 99999999999999999999` made label + 1 classes (15 GB RSS); a label of 1,000,000 in a
    3-class list built 1,000,001 classes. Without class names the class count is bounded by MAX_CLASSES."""
    import time

    root = _three_images(tmp_path)
    for label in (1_000_000, 99999999999999999999):
        path = _list_file(tmp_path, f"c0/0.jpg 0\nc1/1.jpg 1\nc2/2.jpg {label}\n".encode())
        start = time.perf_counter()
        with pytest.raises(ValueError, match=rf"bad\.txt:3: label {label} would make {label + 1:,} classes "
                                             r"\(more than 100,000; the largest other label is 1\)"):
            load_split_list(path, root, cache_dir=tmp_path / "cache")
        assert time.perf_counter() - start < 2
    path = _list_file(tmp_path, b"c0/0.jpg 0\nc1/1.jpg 1\nc2/2.jpg 1000000\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: label 1000000 is outside \[0, 3\) \(3 class names given\)"):
        load_split_list(path, root, class_names=["a", "b", "c"], cache_dir=tmp_path / "cache")
    path = _list_file(tmp_path, b"c0/0.jpg 0\nc1/1.jpg -1\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: label -1 is outside \[0, 1\) \(1 classes, from the largest"):
        load_split_list(path, root, cache_dir=tmp_path / "cache")


def test_list_encoding(tmp_path):
    """A UTF-8 BOM is dropped; any other encoding is an error naming the file, line and byte."""
    root = _three_images(tmp_path)
    lines = "c0/0.jpg 0\nc1/1.jpg 1\nc2/2.jpg 2\n"
    ds = load_split_list(_list_file(tmp_path, b"\xef\xbb\xbf" + lines.encode(), "bom.txt"), root,
                         cache_dir=tmp_path / "cache")
    assert list(ds["label"]) == [0, 1, 2] and ds.features["label"].names == ["c0", "c1", "c2"]
    latin1 = _list_file(tmp_path, "c0/0.jpg 0\nc1/caf\u00e9.jpg 1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"bad\.txt:2: not UTF-8 text \(byte 0xe9 at byte 17 of the file\)"):
        load_split_list(latin1, root, cache_dir=tmp_path / "cache")
    utf16 = _list_file(tmp_path, lines.encode("utf-16"), "utf16.txt")
    with pytest.raises(ValueError, match=r"utf16\.txt: the file is UTF-16 text"):
        load_split_list(utf16, root, cache_dir=tmp_path / "cache")
    utf16 = _list_file(tmp_path, lines.encode("utf-16-le"), "utf16le.txt")
    with pytest.raises(ValueError, match=r"utf16le\.txt:1: NUL byte at byte 1"):
        load_split_list(utf16, root, cache_dir=tmp_path / "cache")


def test_paths_outside_the_image_root_are_refused_unless_allowed(tmp_path):
    from conftest import write_image

    root = _three_images(tmp_path)
    outside = tmp_path / "elsewhere" / "x.jpg"
    write_image(outside, 9)
    for bad in (str(outside), "../elsewhere/x.jpg", "c0/../../elsewhere/x.jpg"):
        path = _list_file(tmp_path, f"c0/0.jpg 0\n{bad} 1\n".encode())
        with pytest.raises(ValueError, match=rf"bad\.txt:2: image path '{re.escape(bad)}' leaves the image root "
                                             r".*allow_outside_root"):
            load_split_list(path, root, cache_dir=tmp_path / "cache")
        ds = load_split_list(path, root, cache_dir=tmp_path / "cache", allow_outside_root=True)
        raw = ds.cast_column("image", datasets.Image(decode=False))[1]["image"]["path"]
        assert Path(raw).resolve() == outside.resolve()
    (root / "..c").mkdir()  # a folder whose name starts with '..' is inside
    inside = _list_file(tmp_path, b"c0/../c1/1.jpg 0\n..c/../c2/2.jpg 1\n", "inside.txt")
    assert len(load_split_list(inside, root, cache_dir=tmp_path / "cache")) == 2  # '..' that stays inside is fine


def _inat(tmp_path, images, annotations, categories=None, name="train2018.json"):
    from conftest import write_image

    root = tmp_path / "inat"
    for image in images:
        if isinstance(image.get("file_name"), str) and not Path(image["file_name"]).is_absolute():
            write_image(root / image["file_name"], 0)
    data = {"images": images, "annotations": annotations}
    if categories is not None:
        data["categories"] = categories
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path, root


def test_inat_non_contiguous_categories_are_mapped_and_recorded(tmp_path, caplog):
    images = [{"id": i, "file_name": f"img/{i}.jpg"} for i in range(4)]
    annotations = [{"image_id": i, "category_id": c} for i, c in enumerate([1000, 7, 7, 42])]
    categories = [{"id": 1000, "name": "Quercus"}, {"id": 7, "name": "Abies"}, {"id": 42, "name": "Acer"}]
    path, root = _inat(tmp_path, images, annotations, categories)
    with caplog.at_level("WARNING", logger="dive_hf.data.split_list"):
        ds = load_inat_json(path, root, cache_dir=tmp_path / "cache")
    assert ds.features["label"].names == ["Abies", "Acer", "Quercus"]
    assert list(ds["label"]) == [2, 0, 0, 1]
    assert json.loads(ds.info.description)[SPLIT_SOURCE_KEY]["category_ids"] == [7, 42, 1000]
    assert "category ids are not 0..2" in caplog.text and "mapped to labels 0..2" in caplog.text


@pytest.mark.parametrize("case, match", [
    ("duplicate image id", r"train2018\.json: images\[1\]: image id 5 is also images\[0\]"),
    ("non-integer image id", r"train2018\.json: images\[0\] needs an integer 'id', got .*'a1'"),
    ("float category", r"train2018\.json: annotations\[0\] needs an integer 'image_id' and 'category_id'"),
    ("two labels", r"train2018\.json: annotations\[1\]: image id 5 already has a label \(annotations\[0\]\)"),
    ("unknown category", r"train2018\.json: annotations\[0\]: category_id 3 is not in 'categories'"),
    ("absurd category", r"train2018\.json: images\[0\] \(id=5\): label 1000000 would make 1,000,001 classes"),
    ("outside root", r"images\[0\] \(id=5\): image path '\.\./x\.jpg' leaves the image root"),
    ("not UTF-8", r"train2018\.json: not UTF-8 text \(byte 0xe9"),
])
def test_bad_inat_json_names_the_entry(tmp_path, case, match):
    images, annotations, categories = [{"id": 5, "file_name": "a.jpg"}], [{"image_id": 5, "category_id": 0}], None
    if case == "duplicate image id":
        images.append({"id": 5, "file_name": "b.jpg"})
    elif case == "non-integer image id":
        images[0]["id"] = "a1"
    elif case == "float category":
        annotations[0]["category_id"] = 1.5
    elif case == "two labels":
        annotations.append({"image_id": 5, "category_id": 0})
    elif case == "unknown category":
        annotations[0]["category_id"], categories = 3, [{"id": 0, "name": "x"}]
    elif case == "absurd category":
        annotations[0]["category_id"] = 1_000_000
    elif case == "outside root":
        images[0]["file_name"] = "../x.jpg"
    path, root = _inat(tmp_path, images, annotations, categories)
    if case == "not UTF-8":
        path.write_bytes(path.read_bytes().replace(b"a.jpg", b"\xe9.jpg"))
    with pytest.raises(ValueError, match=match):
        load_inat_json(path, root, cache_dir=tmp_path / "cache")


def test_inat_json_with_a_bom_is_read(tmp_path):
    path, root = _inat(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [{"image_id": 1, "category_id": 0}],
                       [{"id": 0, "name": "Abies"}])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_inat_json(path, root, cache_dir=tmp_path / "cache").features["label"].names == ["Abies"]


def test_data_command_passes_allow_outside_root(tmp_path, capsys):
    from dive_hf.cli import main, run_cli

    root = _three_images(tmp_path)
    path = _list_file(tmp_path, b"c0/0.jpg 0\n../images/c1/1.jpg 1\n")
    args = ["data", "--train_list", str(path), "--image_root", str(root), "--many_shot_threshold", "4",
            "--few_shot_threshold", "2"]
    assert run_cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dive-hf data: error: ") and "bad.txt:2" in err and "\n" not in err
    assert main([*args, "--allow_outside_root"]) == 0
    assert "classes: 2   images: 2" in capsys.readouterr().out
