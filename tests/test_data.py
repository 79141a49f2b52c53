"""Embedded data, the CIFAR-LT rule, class counts, shot groups and transforms."""
import json

import datasets
import numpy as np
import pytest
import torch

from dive_hf.data import (EMBEDDED_PRESETS, LONG_TAIL_KEY, attach_transform, cifar_transform, class_counts,
                          embedded_class_names, load_embedded, long_tail_counts, make_long_tailed, shot_groups)
from dive_hf.data.synthetic import _class_layout, draw_images


def test_cifar_lt_counts_match_the_literature():
    assert sum(long_tail_counts(500, 100, 100)) == 10_847  # CIFAR-100-LT IF 100
    assert sum(long_tail_counts(500, 50, 100)) == 12_608  # CIFAR-100-LT IF 50
    assert sum(long_tail_counts(5000, 100, 10)) == 12_406  # CIFAR-10-LT IF 100
    counts = long_tail_counts(500, 100, 100)
    assert counts[0] == 500 and counts[-1] == 5 and counts == sorted(counts, reverse=True)


def test_embedded_full_preset_long_tails_to_cifar100_lt_size():
    preset = EMBEDDED_PRESETS["full"]
    assert preset.num_classes == 100 and preset.train_per_class == 500 and preset.test_per_class == 100
    assert sum(long_tail_counts(preset.train_per_class, preset.imbalance_factor, preset.num_classes)) == 10_847


def test_tiny_preset_layout(tiny_data):
    train, test = tiny_data["train"], tiny_data["test"]
    assert isinstance(train.features["image"], datasets.Image)
    assert isinstance(train.features["label"], datasets.ClassLabel)
    assert train.features["label"].names == embedded_class_names(EMBEDDED_PRESETS["tiny"])
    assert class_counts(train) == [40] * 10 and class_counts(test) == [8] * 10
    assert train.info.dataset_name == "dive_hf-embedded-tiny" and train.split == "train"
    image = train[0]["image"]
    assert image.size == (32, 32) and image.mode == "RGB"


def test_embedded_data_is_deterministic_and_cached(tiny_data, tmp_path):
    rebuilt = load_embedded("tiny", cache_dir=tmp_path)  # a fresh build elsewhere
    for split in ("train", "test"):
        a = tiny_data[split].with_format("numpy")
        b = rebuilt[split].with_format("numpy")
        assert np.array_equal(a["label"], b["label"])
        assert np.array_equal(np.stack(a[:16]["image"]), np.stack(b[:16]["image"]))
    entries = list((tmp_path / "embedded").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # no temp folder left behind


def test_classes_come_in_families_with_intra_class_variation():
    preset = EMBEDDED_PRESETS["full"]
    layout = _class_layout(preset)
    assert len(set(layout)) == 100
    families = {f for f, _ in layout}
    assert len(families) == 20
    names = embedded_class_names(preset)
    assert len(set(names)) == 100 and len({n.rsplit("_", 1)[0] for n in names}) == 20
    drawn = draw_images(3, 2, 50, np.random.default_rng(0))
    assert drawn.shape == (50, 32, 32, 3) and drawn.dtype == np.uint8
    images = drawn.astype(np.float32)
    assert images.std(0).mean() > 20  # images of one class differ (pose, scale, colour, clutter, noise)
    # fine classes of one family are closer to each other than to another family's classes
    mean = lambda f, v: draw_images(f, v, 200, np.random.default_rng(1)).reshape(200, -1).mean(0)  # noqa: E731
    same = np.linalg.norm(mean(3, 1) - mean(3, 2))
    other = np.linalg.norm(mean(3, 1) - mean(8, 1))
    assert same < other


def test_make_long_tailed_takes_class_prefixes_in_order(tiny_data):
    train = tiny_data["train"]
    lt = make_long_tailed(train, 10)
    expected = long_tail_counts(40, 10, 10)
    assert class_counts(lt) == expected
    labels = np.asarray(train["label"])
    for label in (0, 5, 9):
        first = np.flatnonzero(labels == label)[: expected[label]]
        got = [i for i, y in zip(lt._indices.column(0).to_pylist(), lt["label"]) if y == label]
        assert got == first.tolist()
    again = make_long_tailed(train, 10)
    assert again._indices.column(0).to_pylist() == lt._indices.column(0).to_pylist()
    recipe = json.loads(lt.info.description)[LONG_TAIL_KEY]
    assert recipe["imbalance_factor"] == 10 and recipe["n_max"] == 40 and recipe["class_counts"] == expected


def test_make_long_tailed_errors(tiny_data):
    with pytest.raises(ValueError, match="imbalance_factor=0.5"):
        make_long_tailed(tiny_data["train"], 0.5)
    with pytest.raises(ValueError, match="label column 'fine_label' not in"):
        make_long_tailed(tiny_data["train"], 10, label_column="fine_label")
    plain = datasets.Dataset.from_dict({"label": [0, 1, 1]})
    with pytest.raises(ValueError, match="not datasets.ClassLabel"):
        class_counts(plain)


def test_class_counts_keep_empty_classes():
    ds = datasets.Dataset.from_dict({"label": [0, 0, 2]},
                                    features=datasets.Features({"label": datasets.ClassLabel(num_classes=4)}))
    assert class_counts(ds) == [2, 0, 1, 0]


def test_shot_groups_thresholds():
    groups = shot_groups([500, 101, 100, 20, 19, 1])
    assert groups == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    assert shot_groups([10, 5, 2], many=6, few=3) == {"many": [0], "medium": [1], "few": [2]}


def test_cifar_transform_and_attach(tiny_data):
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    ds = attach_transform(tiny_data["test"], cifar_transform(mean, std, train=False))
    item = ds[0]
    assert item["pixel_values"].shape == (3, 32, 32) and item["labels"] == tiny_data["test"][0]["label"]
    raw = torch.from_numpy(np.asarray(tiny_data["test"][0]["image"], dtype=np.float32) / 255).permute(2, 0, 1)
    torch.testing.assert_close(item["pixel_values"], (raw - 0.5) / 0.25)
    # training transform: pad-4 random crop + flip keeps the shape and the pixel statistics' scale
    train_item = attach_transform(tiny_data["test"], cifar_transform(mean, std, train=True))[0]
    assert train_item["pixel_values"].shape == (3, 32, 32)


def test_building_embedded_data_shows_progress_once(tmp_path, capsys):
    """A cache miss draws the images under a progress bar naming the preset (datasets' own setting hides it);
    a cached load is silent."""
    from dive_hf.data import EmbeddedPreset, load_embedded

    preset = EmbeddedPreset(num_families=1, train_per_class=6, test_per_class=2, imbalance_factor=2)
    load_embedded(preset, cache_dir=tmp_path / "a")
    err = capsys.readouterr().err
    assert "drawing embedded:custom (5 classes" in err and "40/40" in err
    load_embedded(preset, cache_dir=tmp_path / "a")
    assert "drawing" not in capsys.readouterr().err
    datasets.disable_progress_bars()
    try:
        load_embedded(preset, cache_dir=tmp_path / "b")
    finally:
        datasets.enable_progress_bars()
    assert "drawing" not in capsys.readouterr().err
