"""dive_hf.data.transforms: small-image transforms resize what is not at the model's size; errors name the image."""
import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from dive_hf.data.transforms import attach_transform, cifar_transform

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _photo(width, height):
    """Left half black, right half white: a corner crop and the whole picture differ clearly."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, width // 2:] = 255
    return Image.fromarray(array)


def test_a_larger_photo_is_resized_whole_not_cropped_to_a_corner():
    out = cifar_transform(MEAN, STD, train=False, size=32)(_photo(300, 200))
    assert out.shape == (3, 32, 32)
    pixels = out * 0.25 + 0.5  # back to [0, 1]
    # the whole photo, resized: both halves are there (a 32×32 corner patch of the original would be all black)
    assert pixels[:, :, :8].max() < 0.05 and pixels[:, :, -8:].min() > 0.95
    expected = torch.nn.functional.interpolate(  # shorter side to 32 → 48×32, centre crop 32
        torch.from_numpy(np.asarray(_photo(300, 200))).permute(2, 0, 1)[None].float() / 255, size=(32, 48),
        mode="bilinear", antialias=True, align_corners=False)[0, :, :, 8:40]
    assert torch.allclose(pixels, expected, atol=0.03)


def test_an_image_at_the_models_size_is_untouched_and_a_small_one_enlarged():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    direct = (torch.from_numpy(np.asarray(image)).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(cifar_transform(MEAN, STD, train=False, size=32)(image), direct, atol=1e-6)
    train = cifar_transform(MEAN, STD, train=True, size=32)(_photo(20, 12))  # smaller than the crop: enlarged
    assert train.shape == (3, 32, 32)


def test_a_failing_transform_names_the_image(tmp_path):
    path = tmp_path / "odd.png"
    _photo(40, 30).save(path)
    data = datasets.Dataset.from_dict({"image": [str(path)], "label": [0]}).cast_column("image", datasets.Image())

    def broken(image):
        raise RuntimeError("boom")

    with pytest.raises(ValueError, match=r"cannot transform image .*odd\.png \(40×30\): boom"):
        attach_transform(data, broken)[0]
