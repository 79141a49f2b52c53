"""Random resized crops at a fraction of timm's cost: decode a JPEG only at the resolution the crop needs, resize
the crop with torch's vectorised ``uint8`` kernel.

A 224-px RandomResizedCrop of an 800-px iNaturalist photo keeps, on average, a crop of ~400 px side and throws
away most of the decoded pixels. :class:`ReducedDecodeRandomResizedCrop` draws the crop first — with timm's own
``RandomResizedCropAndInterpolation.get_params``, from the image's size, which a JPEG's header gives before any
decoding — then asks libjpeg for the image at 1/2, 1/4 or 1/8 of its size (``PIL.Image.draft``: the reduction is
done in the DCT, almost for free) whenever the crop is still at least the output size there, and resizes the same
region of the reduced image. Crop positions, scales, aspect ratios and flips are drawn exactly as timm draws them
(same calls, same RNG), so the augmentation distribution is unchanged; only the pixels of a crop downscaled ≥ 2×
come through the decoder's reduction instead of the resampling filter alone. Images that are not JPEG, already
decoded, or carry an EXIF rotation are decoded at full size (rotated as ``datasets`` rotates them).

The resize itself — PIL's bicubic on a ~400-px crop is a third of the per-image cost, more than the decode — goes
through ``torch.nn.functional.interpolate(..., antialias=True)`` on the ``uint8`` channels-last crop: torch's
port of PIL's separable filters with AVX2/AVX-512 kernels, the kernel ~5× faster than PIL's, ~3× with the copies
in and out; pixels within 3 levels of PIL's (mean < 0.05) for a full-size decode (after a reduced one, see
:class:`ReducedDecodeRandomResizedCrop`). A JPEG decoded at full size for it is decoded by torchvision's
libjpeg-turbo straight into that tensor: PIL's pixels, ~30 % faster than PIL's decoder. The flip and colour jitter
that follow are timm's, on PIL images.
"""
from __future__ import annotations

import io
import random
import warnings

import PIL.Image
import torch
import torchvision.transforms.functional as F
from timm.data.transforms import RandomResizedCropAndInterpolation

__all__ = ["ReducedDecodeRandomResizedCrop", "reduce_transform", "ORIENTATION_TAG"]

ORIENTATION_TAG = 0x0112  # EXIF orientation: a rotated photo is transposed after decoding, so it is decoded fully
SIMD_MODES = {F.InterpolationMode.BILINEAR: "bilinear", F.InterpolationMode.BICUBIC: "bicubic"}  # torch's uint8 AA


class ReducedDecodeRandomResizedCrop:
    """Wraps a timm ``RandomResizedCropAndInterpolation``: same parameters, same draws; takes an image that PIL has
    opened but not yet decoded (see :func:`dive_hf.data.transforms.attach_transform`) and returns an RGB crop.

    Args:
        reduced_decoding: decode JPEGs at 1/2, 1/4 or 1/8 size when the crop allows it (above).
        simd_resize: resize bilinear/bicubic crops with torch's vectorised ``uint8`` antialiased kernel, a port of
            PIL's filters (same support and coefficients; ≤ 3 levels from PIL's pixels, mean < 0.05) at ~1/3 of
            PIL's cost. With a reduced decode the crop's edges fall on the reduced image's pixel grid: within half
            an output pixel of timm's box — a sub-pixel shift, so on fine texture the pixels differ by more than
            the rounding. Off: PIL's resize, timm's exact pixels for a full-size decode.
        tensor_decode: with ``simd_resize``, a JPEG decoded at full size is decoded by torchvision's libjpeg-turbo
            straight into a ``uint8`` tensor — the same pixels as PIL's decoder, ~30 % faster (PIL unpacks into
            4-byte pixels, then copies them out again). PIL decodes a file torchvision rejects (truncated, corrupt)
            and every file once torchvision's deprecated decoder is gone.
    """

    def __init__(self, crop: RandomResizedCropAndInterpolation, reduced_decoding: bool = True,
                 simd_resize: bool = True, tensor_decode: bool = True):
        self.crop = crop
        self.reduced_decoding = reduced_decoding
        self.simd_resize = simd_resize
        self.tensor_decode = tensor_decode

    def __call__(self, image: PIL.Image.Image) -> PIL.Image.Image:
        reducible = self.reduced_decoding and _reducible(image)
        if not reducible:
            image = _rgb(image)  # then exactly timm's crop of the decoded image
        i, j, h, w = self.crop.get_params(image, self.crop.scale, self.crop.ratio)
        interpolation = self.crop.interpolation
        if isinstance(interpolation, (tuple, list)):  # timm's "random" interpolation, drawn after the crop as timm
            interpolation = random.choice(interpolation)
        out_h, out_w = self.crop.size
        if w == 0 or h == 0:  # an image of a few pixels can draw an empty crop: timm's answer (a black image)
            return F.resized_crop(_rgb(image), i, j, h, w, [out_h, out_w], interpolation)
        scale = _reduce(image, (w, h), (out_w, out_h)) if reducible else 1
        box = (j / scale, i / scale, (j + w) / scale, (i + h) / scale)
        if self.simd_resize and interpolation in SIMD_MODES:
            box = tuple(round(v) for v in box)  # whole pixels of the (reduced) image
            pixels = _decode_jpeg(image) if scale == 1 and self.tensor_decode else None
            if pixels is None:  # PIL decodes (reduced, or not a plain RGB JPEG): only the crop is copied out
                pixels, box = _as_tensor(image.crop(box)), None
            return _simd_resize(pixels, box, (out_w, out_h), SIMD_MODES[interpolation])
        image = image if image.mode == "RGB" else image.convert("RGB")  # no EXIF rotation left to apply here
        if scale == 1:
            return F.resized_crop(image, i, j, h, w, [out_h, out_w], interpolation)
        return image.resize((out_w, out_h), F.pil_modes_mapping[interpolation], box=box)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.crop!r}, reduced_decoding={self.reduced_decoding}, "
                f"simd_resize={self.simd_resize}, tensor_decode={self.tensor_decode})")


def _decode_jpeg(image: PIL.Image.Image) -> torch.Tensor | None:
    """A JPEG that PIL has opened from memory (as ``attach_transform`` opens files) but not decoded, whose pixels
    are plain RGB, decoded by torchvision: ``[3, H, W]`` ``uint8`` laid out channels-last. ``None`` for anything
    else (decoded, grey, CMYK, opened from a file) — PIL decodes those."""
    source = getattr(image, "fp", None)
    if getattr(image, "format", None) != "JPEG" or not image.tile or image.mode != "RGB" \
            or not isinstance(source, io.BytesIO):
        return None
    try:  # deprecated since torchvision 0.29 (for TorchCodec): once it is gone, PIL decodes
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that deprecation, on every call
        try:
            return decode_jpeg(torch.frombuffer(bytearray(source.getbuffer()), dtype=torch.uint8),
                               ImageReadMode.RGB)
        except RuntimeError:  # truncated or corrupt: PIL decodes it as timm would — raising its own error, or
            return None       # decoding what it can under ImageFile.LOAD_TRUNCATED_IMAGES


def _as_tensor(image: PIL.Image.Image) -> torch.Tensor:
    """A PIL RGB image (decoded here if it was not) as a ``[3, H, W]`` ``uint8`` tensor laid out channels-last."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(image.size[1], image.size[0], 3).permute(2, 0, 1)


def _simd_resize(pixels: torch.Tensor, box, size: tuple[int, int], mode: str) -> PIL.Image.Image:
    """The ``box`` (whole pixels; ``None``: all) of ``[3, H, W]`` ``uint8`` pixels resized to ``size`` by
    ``torch.nn.functional.interpolate`` (antialiased, channels-last: the SIMD kernel), back as a PIL image for the
    flip and colour jitter that follow."""
    if box is not None:
        left, top, right, bottom = box
        pixels = pixels[:, top:bottom, left:right]
    pixels = pixels.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    out = torch.nn.functional.interpolate(pixels, size=(size[1], size[0]), mode=mode, antialias=True,
                                          align_corners=False)
    return PIL.Image.fromarray(out[0].permute(1, 2, 0).numpy())  # HWC uint8: RGB


def _reducible(image: PIL.Image.Image) -> bool:
    """A JPEG PIL has opened but not decoded, without an EXIF rotation (those are decoded, then transposed)."""
    return (getattr(image, "format", None) == "JPEG" and bool(getattr(image, "tile", None))
            and image.getexif().get(ORIENTATION_TAG, 1) == 1)


def _reduce(image: PIL.Image.Image, crop_size: tuple[int, int], out_size: tuple[int, int]) -> float:
    """Ask the JPEG decoder for the largest reduction (1, 2, 4 or 8) that keeps the crop at least ``out_size``;
    returns the reduction in effect (1: the image will be decoded at full size)."""
    width, height = image.size
    wanted = (-(-width * out_size[0] // crop_size[0]), -(-height * out_size[1] // crop_size[1]))  # ceil
    if width // wanted[0] < 2 or height // wanted[1] < 2:
        return 1
    result = image.draft("RGB", wanted)
    return width / result[1][2] if result else 1


def _rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Decode (once) and convert to RGB, applying an EXIF rotation as ``datasets`` does."""
    if image.getexif().get(ORIENTATION_TAG, 1) != 1:
        import PIL.ImageOps

        image = PIL.ImageOps.exif_transpose(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def reduce_transform(transform, reduced_decoding: bool = True, simd_resize: bool = True,
                     tensor_decode: bool = True):
    """``transform`` (a timm/torchvision ``Compose``) with its leading ``RandomResizedCropAndInterpolation``
    replaced by a :class:`ReducedDecodeRandomResizedCrop`, marked ``accepts_undecoded`` for
    :func:`~dive_hf.data.transforms.attach_transform`; ``None`` when it does not start with one or the levers
    leave timm's crop as it is."""
    steps = getattr(transform, "transforms", None)
    if not steps or not isinstance(steps[0], RandomResizedCropAndInterpolation):
        return None
    if not (reduced_decoding or simd_resize):
        return None
    crop = ReducedDecodeRandomResizedCrop(steps[0], reduced_decoding, simd_resize, tensor_decode)
    reduced = type(transform)([crop, *steps[1:]])
    reduced.accepts_undecoded = True  # attach_transform hands it images opened, not yet decoded
    return reduced
