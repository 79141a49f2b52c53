"""The fast input pipeline: reduced-size JPEG decoding draws timm's crops, uint8 batches normalised by the trainer.

The crop geometry is read back from the output pixels: the test image encodes x in its red channel and y in its
green channel, so a least-squares line through an output's columns (rows) gives the crop's left edge, width and
flip (top edge, height) whatever path made it.
"""
import math
import random

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform

from dive_hf.data.jpeg_crop import ReducedDecodeRandomResizedCrop, reduce_transform
from dive_hf.data.pixels import UInt8Normalizer
from dive_hf.data.seeded import SeededAugmentation
from dive_hf.data.transforms import _open, attach_transform, cifar_transform, model_transform

W, H = 800, 600  # an iNat-sized photo: most 224-px crops of it are downscaled ≥ 2× (reduced decoding applies)


def _coordinate_jpeg(path, width=W, height=H, exif=None):
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    rgb = np.stack([x, y, np.full_like(x, 128)], -1).round().astype(np.uint8)
    image = Image.fromarray(rgb)
    image.save(path, format="JPEG", quality=95, **({"exif": exif} if exif is not None else {}))
    return path


def _timm_geometry_transform():
    """timm's training transform without colour jitter (it would scramble the coordinate channels), uint8 out."""
    from timm.data import create_transform

    return create_transform(224, is_training=True, color_jitter=0, interpolation="bilinear", use_prefetcher=True)


def _geometry(pixels: torch.Tensor, width=W, height=H):
    """(left, top, crop width, crop height, flipped) of a crop of the coordinate image, from its pixels."""
    def line(profile, extent):  # profile[k] ≈ a + b·k in image pixels
        k = np.arange(len(profile))
        b, a = np.polyfit(k, profile / 255.0 * (extent - 1), 1)
        return a, b

    a_x, b_x = line(pixels[0].double().mean(0).numpy(), width)
    a_y, b_y = line(pixels[1].double().mean(1).numpy(), height)
    w, h = abs(b_x) * pixels.shape[2], abs(b_y) * pixels.shape[1]
    left = (a_x if b_x > 0 else a_x + b_x * (pixels.shape[2] - 1)) - 0.5 * w / pixels.shape[2] + 0.5
    top = a_y - 0.5 * h / pixels.shape[1] + 0.5
    return left, top, w, h, b_x < 0


def _seeded(seed):
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)


def _lazy(path):
    return _open({"path": str(path)})  # opened in memory, not decoded: what attach_transform hands our crop


def _close_to(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """torch's SIMD resize against PIL's: a rounding apart (measured: max 2–3 levels, mean < 0.02)."""
    difference = (got.float() - expected.float()).abs()
    return difference.max() <= 3 and difference.mean() < 0.05


@pytest.mark.parametrize("simd_resize", [True, False])
def test_reduced_decoding_draws_exactly_timms_crops(tmp_path, simd_resize):
    path = _coordinate_jpeg(tmp_path / "photo.jpg")
    timm_transform = _timm_geometry_transform()
    reduced = reduce_transform(timm_transform, simd_resize=simd_resize)
    assert isinstance(reduced.transforms[0], ReducedDecodeRandomResizedCrop)
    decoded = Image.open(path).convert("RGB")
    n_reduced = 0
    for seed in range(60):
        _seeded(seed)
        expected = timm_transform(decoded)
        _seeded(seed)
        got = reduced(_lazy(path))
        assert got.dtype == torch.uint8 and got.shape == expected.shape == (3, 224, 224)
        g_exp, g_got = _geometry(expected), _geometry(got)
        assert g_got[4] == g_exp[4]  # same flip
        downscale = min(g_exp[2], g_exp[3]) / 224
        # same crop, within 2 px; a reduced decode resized by SIMD puts the edges on the reduced pixel grid: each
        # within half a reduced pixel (≤ half an output pixel: downscale / 2 image pixels), the width within one
        slack = downscale if simd_resize and downscale >= 2 else 0
        assert np.allclose(g_got[:4], g_exp[:4], atol=2.0 + slack), (seed, g_exp, g_got)
        if downscale >= 2:  # decoded at 1/2 or less: pixels through the decoder's reduction, close to timm's
            n_reduced += 1
            assert (got.float() - expected.float()).abs().mean() < 1.5
        elif downscale < 1.9:  # decoded at full size: timm's pixels (exactly, with PIL's resize)
            assert _close_to(got, expected) if simd_resize else torch.equal(got, expected)
    assert n_reduced >= 10  # the lever was exercised


def _ks(a, b) -> float:
    """Two-sample Kolmogorov–Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    cdf = lambda v: np.searchsorted(np.sort(v), grid, side="right") / len(v)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


def test_the_real_pipeline_keeps_timms_crop_distribution(tmp_path, monkeypatch):
    """Seeded augmentation → attach_transform (images opened, not decoded) → reduced decoding, against timm's
    transform on decoded images with independent draws: crop scale, aspect ratio and flip rate."""
    from dive_hf.data import jpeg_crop

    reductions = []
    reduce = jpeg_crop._reduce
    monkeypatch.setattr(jpeg_crop, "_reduce", lambda *a: reductions.append(reduce(*a)) or reductions[-1])
    path = _coordinate_jpeg(tmp_path / "photo.jpg")
    n = 400
    split = datasets.Dataset.from_dict({"image": [str(path)] * n, "label": [0] * n},
                                       features=datasets.Features({"image": datasets.Image(),
                                                                   "label": datasets.ClassLabel(num_classes=1)}))
    ours = SeededAugmentation(attach_transform(split, reduce_transform(_timm_geometry_transform())), seed=11)
    ours_geometry = [_geometry(item["pixel_values"]) for item in ours.__getitems__(list(range(n)))]
    timm_transform, decoded = _timm_geometry_transform(), Image.open(path).convert("RGB")
    _seeded(12345)
    timm_geometry = [_geometry(timm_transform(decoded)) for _ in range(n)]

    def stats(rows):
        rows = np.array(rows, dtype=float)
        return rows[:, 2] * rows[:, 3] / (W * H), np.log(rows[:, 2] / rows[:, 3]), rows[:, 4].mean()

    scale_o, ratio_o, flips_o = stats(ours_geometry)
    scale_t, ratio_t, flips_t = stats(timm_geometry)
    critical = 1.63 * math.sqrt(2 / n)  # KS at the 1 % level
    assert _ks(scale_o, scale_t) < critical and _ks(ratio_o, ratio_t) < critical
    assert abs(flips_o - flips_t) < 0.1 and 0.4 < flips_o < 0.6
    assert scale_o.min() >= 0.08 - 0.01 and scale_o.max() <= 1.0 + 0.01  # timm's scale range (0.08, 1)
    assert len(reductions) == n and sum(r >= 2 for r in reductions) > n // 4  # undecoded images, often reduced


@pytest.mark.parametrize("simd_resize", [True, False])
def test_a_rotated_photo_and_a_png_take_timms_path(tmp_path, simd_resize):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: decoded fully, then transposed as datasets does
    rotated = _coordinate_jpeg(tmp_path / "rotated.jpg", exif=exif.tobytes())
    png = tmp_path / "photo.png"
    Image.open(_coordinate_jpeg(tmp_path / "p.jpg")).save(png)
    from PIL import ImageOps

    timm_transform = _timm_geometry_transform()
    reduced = reduce_transform(timm_transform, simd_resize=simd_resize)
    for file, upright in ((rotated, ImageOps.exif_transpose(Image.open(rotated)).convert("RGB")),
                          (png, Image.open(png).convert("RGB"))):
        for seed in range(5):
            _seeded(seed)
            expected = timm_transform(upright)
            _seeded(seed)
            got = reduced(_lazy(file))
            assert _close_to(got, expected) if simd_resize else torch.equal(got, expected)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_simd_resize_matches_pils_resize(interpolation):
    """torch's uint8 antialiased kernel against PIL's resize on textured crops enlarged up to 4× and reduced up to
    4×, non-square output included: a rounding apart, never a shifted or blurred crop."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    from dive_hf.data.jpeg_crop import SIMD_MODES, _as_tensor, _simd_resize

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).resize((960, 720), Image.BICUBIC)
    mode = InterpolationMode(interpolation)
    for left, top, width, height, out in ((0, 0, 960, 720, (224, 224)), (100, 50, 56, 70, (224, 224)),
                                          (300, 200, 900 - 300, 700 - 200, (160, 224)), (5, 7, 224, 224, (224, 224))):
        expected = torch.from_numpy(np.array(F.resized_crop(image, top, left, height, width, list(out), mode)))
        got = torch.from_numpy(np.array(_simd_resize(_as_tensor(image), (left, top, left + width, top + height),
                                                     (out[1], out[0]), SIMD_MODES[mode])))
        assert got.shape == expected.shape == (*out, 3)
        assert _close_to(got, expected), (left, top, width, height, (got.float() - expected.float()).abs().max())
    nearest = reduce_transform(_timm_geometry_transform(), reduced_decoding=False)
    nearest.transforms[0].crop.interpolation = InterpolationMode.NEAREST  # no SIMD kernel: PIL's resize, exactly
    _seeded(0)
    got = nearest(image)
    _seeded(0)
    timm_nearest = _timm_geometry_transform()
    timm_nearest.transforms[0].interpolation = InterpolationMode.NEAREST
    assert torch.equal(got, timm_nearest(image))


def _photo_jpegs(tmp_path):
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).resize((640, 480), Image.BICUBIC)
    photo.save(tmp_path / "photo.jpg", quality=90)
    photo.save(tmp_path / "progressive.jpg", quality=90, progressive=True, subsampling=0)
    photo.convert("L").save(tmp_path / "grey.jpg", quality=90)
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    return tmp_path


@pytest.mark.parametrize("reduced_decoding", [True, False])
def test_torchvisions_decoder_gives_pils_pixels(tmp_path, monkeypatch, reduced_decoding):
    """tensor_decode (torchvision's libjpeg-turbo into a tensor) against PIL's decoder, crop by crop, on a textured
    photo (baseline 4:2:0 and progressive 4:4:4); grey and CMYK JPEGs — undecoded when they reach it with reduced
    decoding on — are left to PIL (torchvision would convert CMYK its own way)."""
    from dive_hf.data import jpeg_crop

    folder = _photo_jpegs(tmp_path)
    timm_transform = create_transform(224, is_training=True, interpolation="bicubic", use_prefetcher=True)
    by_torchvision = reduce_transform(timm_transform, reduced_decoding=reduced_decoding)
    by_pil = reduce_transform(timm_transform, reduced_decoding=reduced_decoding, tensor_decode=False)
    took, decode = [], jpeg_crop._decode_jpeg
    monkeypatch.setattr(jpeg_crop, "_decode_jpeg", lambda image: took.append(decode(image)) or took[-1])
    by_file = {}
    for name in ("photo.jpg", "progressive.jpg", "grey.jpg", "cmyk.jpg"):
        del took[:]
        for seed in range(8):
            _seeded(seed)
            got = by_torchvision(_lazy(folder / name))
            _seeded(seed)
            assert torch.equal(got, by_pil(_lazy(folder / name))), (name, seed)
        by_file[name] = [pixels is not None for pixels in took]
    for name in ("photo.jpg", "progressive.jpg"):  # every full-size decode (a reduced crop is PIL's: no call)
        assert all(by_file[name]) and len(by_file[name]) >= 4
    assert not any(by_file["grey.jpg"] + by_file["cmyk.jpg"])
    assert not reduced_decoding or by_file["grey.jpg"]  # reached the decoder undecoded, and declined


def test_tensor_decoding_falls_back_to_pil(tmp_path, monkeypatch):
    """torchvision's decoders are deprecated (0.29): no warning escapes, and once they are gone PIL decodes; a
    truncated JPEG is PIL's to judge, so ImageFile.LOAD_TRUNCATED_IMAGES is honoured as timm honours it."""
    import warnings

    import torchvision.io
    from PIL import ImageFile

    folder = _photo_jpegs(tmp_path)
    timm_transform = create_transform(224, is_training=True, interpolation="bicubic", use_prefetcher=True)
    ours = reduce_transform(timm_transform, reduced_decoding=False)
    _seeded(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = ours(_lazy(folder / "photo.jpg"))
    monkeypatch.delattr(torchvision.io, "decode_jpeg")  # a torchvision without it
    _seeded(0)
    assert torch.equal(ours(_lazy(folder / "photo.jpg")), expected)
    monkeypatch.undo()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((folder / "photo.jpg").read_bytes()[:-4000])
    with pytest.raises(OSError, match="truncated"):
        ours(_lazy(truncated))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for transform in (ours, timm_transform):
        _seeded(0)
        assert transform(_lazy(truncated)).shape == (3, 224, 224)


def test_tiny_and_non_square_crops_as_timm(tmp_path):
    """A 1×1 image can draw an empty crop (timm answers with a black image, so do we); a non-square output size
    is (height, width) as timm's."""
    Image.new("RGB", (1, 1), (200, 30, 90)).save(tmp_path / "dot.jpg", quality=95)
    timm_square = create_transform(224, is_training=True, interpolation="bicubic", use_prefetcher=True)
    timm_wide = create_transform((160, 224), is_training=True, color_jitter=0, interpolation="bicubic",
                                 use_prefetcher=True)
    photo = _coordinate_jpeg(tmp_path / "photo.jpg")
    for timm_transform, file in ((timm_square, tmp_path / "dot.jpg"), (timm_wide, photo)):
        ours = reduce_transform(timm_transform)
        for seed in range(12):
            _seeded(seed)
            expected = timm_transform(Image.open(file).convert("RGB"))
            _seeded(seed)
            got = ours(_lazy(file))
            assert got.shape == expected.shape
            downscale = min(_geometry(expected, *Image.open(file).size)[2:4]) / 224 if file == photo else 1
            if downscale < 1.9:  # a full-size decode (a reduced one is a sub-pixel shift away)
                assert _close_to(got, expected), (file.name, seed)


@pytest.mark.parametrize("reduced_decoding", [True, False])
def test_a_broken_jpeg_is_named_with_reduced_decoding(tmp_path, reduced_decoding):
    path = _coordinate_jpeg(tmp_path / "photo.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(path.read_bytes()[:2000])  # truncated after the header
    split = datasets.Dataset.from_dict({"image": [str(broken)], "label": [0]},
                                       features=datasets.Features({"image": datasets.Image(),
                                                                   "label": datasets.ClassLabel(num_classes=1)}))
    data = attach_transform(split, reduce_transform(_timm_geometry_transform(), reduced_decoding=reduced_decoding))
    with pytest.raises(OSError, match="cannot decode image .*broken.jpg"):
        data[0]


def test_uint8_transforms_normalised_by_the_trainer_equal_the_float_ones(tmp_path):
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    photo = Image.open(_coordinate_jpeg(tmp_path / "photo.jpg"))
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    for uint8, floats, normalise in (
            (model_transform(model, train=False, uint8=True), model_transform(model, train=False),
             UInt8Normalizer.for_model(model)),  # timm's path at 224 px: ImageNet mean/std from pretrained_cfg
            (cifar_transform(mean, std, False, uint8=True), cifar_transform(mean, std, False),
             UInt8Normalizer(mean, std))):
        pixels = uint8(photo.convert("RGB"))
        assert pixels.dtype == torch.uint8
        torch.testing.assert_close(normalise(pixels[None])[0], floats(photo.convert("RGB")), atol=1e-5, rtol=0)
    floats = torch.zeros(1, 3, 4, 4)
    assert normalise(floats) is floats  # already normalised: untouched
    with pytest.raises(ValueError, match=r"uint8 pixel_values of shape \(3, 4, 4\)"):
        normalise(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_the_trainer_evaluates_uint8_batches_as_float_ones(tmp_path, tiny_data):
    from conftest import stage_kwargs

    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer
    from dive_hf.data import make_long_tailed
    from dive_hf.models import create_timm_model

    model = create_timm_model("resnet20_cifar", 10)
    train = attach_transform(make_long_tailed(tiny_data["train"], 10), model_transform(model, train=True, uint8=True))
    trainer = BalancedSoftmaxTrainer(model=model, args=BalancedSoftmaxConfig(**stage_kwargs(tmp_path / "t")),
                                     train_dataset=train)
    trainer.train()  # a few steps on uint8 batches
    results = {}
    for uint8 in (False, True):
        test = attach_transform(tiny_data["test"], model_transform(model, train=False, uint8=uint8))
        results[uint8] = trainer.predict(test)
    torch.testing.assert_close(torch.as_tensor(results[True].predictions),
                               torch.as_tensor(results[False].predictions), atol=1e-4, rtol=1e-4)
    assert results[True].metrics["test_accuracy"] == results[False].metrics["test_accuracy"]


def test_reduced_decoding_keeps_batches_identical_with_workers(tmp_path):
    from torch.utils.data import DataLoader
    from transformers import default_data_collator

    paths = [str(_coordinate_jpeg(tmp_path / f"p{i}.jpg", 640 + 40 * i, 480)) for i in range(6)]
    split = datasets.Dataset.from_dict({"image": paths, "label": [0] * 6},
                                       features=datasets.Features({"image": datasets.Image(),
                                                                   "label": datasets.ClassLabel(num_classes=1)}))
    data = SeededAugmentation(attach_transform(split, reduce_transform(_timm_geometry_transform())), seed=5)
    data.set_epoch(2)
    batches = [torch.cat([b["pixel_values"] for b in DataLoader(data, batch_size=4, num_workers=workers,
                                                                collate_fn=default_data_collator)])
               for workers in (0, 2)]
    assert torch.equal(*batches)


def test_uint8_batches_take_deepspeeds_dtype(tmp_path, tiny_data):
    """DeepSpeed has no autocast: Trainer._prepare_input casts float inputs to its dtype, and the normalised uint8
    batch must get the same cast (else a bf16 model meets float32 pixels)."""
    from types import SimpleNamespace

    from conftest import stage_kwargs

    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer
    from dive_hf.data import make_long_tailed

    train = attach_transform(make_long_tailed(tiny_data["train"], 10), cifar_transform((0.5,) * 3, (0.25,) * 3, True))
    trainer = BalancedSoftmaxTrainer(model="resnet20_cifar", args=BalancedSoftmaxConfig(**stage_kwargs(tmp_path)),
                                     train_dataset=train)
    batch = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert trainer._pixels({"pixel_values": batch.clone()}).dtype == torch.float32
    plugin = SimpleNamespace(hf_ds_config=SimpleNamespace(dtype=lambda: torch.bfloat16))
    trainer.accelerator = SimpleNamespace(unwrap_model=lambda model: model,
                                          state=SimpleNamespace(deepspeed_plugin=plugin))
    trainer.is_deepspeed_enabled = True
    inputs = {"pixel_values": batch.clone()}
    assert trainer._pixels(inputs).dtype == torch.bfloat16 and inputs["pixel_values"].dtype == torch.bfloat16


def test_reduced_decoding_reads_urls_as_datasets_does(tmp_path):
    """A path that is not local (here a file inside a zip, ``zip://photo.jpg::archive.zip``; also https://, hf://)
    is read with datasets' xopen."""
    import zipfile

    with zipfile.ZipFile(tmp_path / "archive.zip", "w") as archive:
        archive.write(_coordinate_jpeg(tmp_path / "photo.jpg"), "photo.jpg")
    split = datasets.Dataset.from_dict({"image": [f"zip://photo.jpg::{tmp_path / 'archive.zip'}"], "label": [0]},
                                       features=datasets.Features({"image": datasets.Image(),
                                                                   "label": datasets.ClassLabel(num_classes=1)}))
    item = attach_transform(split, reduce_transform(_timm_geometry_transform()))[0]
    assert item["pixel_values"].shape == (3, 224, 224)


def test_the_recipes_loader_trains_the_same_with_persistent_workers_and_after_resume(tmp_path):
    """The recipes' pipeline (reduced decoding, uint8 batches, seeded augmentation) trains bit-identical weights with
    0 workers, with 2 persistent workers, and stopped after epoch 1 then resumed (2 persistent workers)."""
    import shutil

    from safetensors.torch import load_file

    from conftest import stage_kwargs

    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer
    from dive_hf.models import create_timm_model

    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(24):  # photos 2–3× the 72-px input: most crops are decoded reduced
        path = tmp_path / "images" / f"{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        size = (int(rng.integers(160, 230)), int(rng.integers(160, 230)))
        Image.fromarray(rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)).resize(
            size, Image.BICUBIC).save(path, quality=90)
        paths.append(str(path))
        labels.append(i % 3 if i < 18 else 0)
    split = datasets.Dataset.from_dict({"image": paths, "label": labels}, features=datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=3)}))

    def train(name, workers, resume=False, **overrides):
        torch.manual_seed(0)  # the same initial weights
        model = create_timm_model("resnet18", 3, image_size=72)
        data = attach_transform(split, model_transform(model, train=True, uint8=True))
        args = BalancedSoftmaxConfig(**stage_kwargs(tmp_path / name, **{
            "max_steps": -1, "num_train_epochs": 2, "per_device_train_batch_size": 8, "image_size": 72,
            "save_strategy": "epoch", "dataloader_num_workers": workers,
            "dataloader_persistent_workers": workers > 0, **overrides}))
        BalancedSoftmaxTrainer(model=model, args=args, train_dataset=data).train(
            resume_from_checkpoint=True if resume else None)
        return tmp_path / name

    def weights(folder):
        return load_file(folder / "checkpoint-6" / "model.safetensors")

    reference = weights(train("in_process", 0))
    with_workers = weights(train("workers", 2))
    shutil.copytree(tmp_path / "workers" / "checkpoint-3", tmp_path / "cut" / "checkpoint-3")  # stopped after epoch 1
    resumed = weights(train("cut", 2, resume=True))
    for other in (with_workers, resumed):
        assert reference.keys() == other.keys() and all(torch.equal(reference[k], other[k]) for k in reference)
