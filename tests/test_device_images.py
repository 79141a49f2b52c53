"""The small-image fast path: same pixels as the CPU transform for the same offsets, same distribution of offsets and
flips, and the same training losses as the CPU path."""
import pytest
import torch
import torchvision.transforms.functional as TF

from conftest import stage_kwargs
from dive_hf.data import DeviceImages, cifar_transform
from dive_hf.data.device_images import augment_batch

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def _cpu_view(image, top, left, flip, padding=4):
    """torchvision's RandomCrop(32, padding=4) at (top, left), then RandomHorizontalFlip, ToTensor, Normalize."""
    image = TF.crop(TF.pad(image, padding, fill=0), top, left, image.height, image.width)
    if flip:
        image = TF.hflip(image)
    return TF.normalize(TF.to_tensor(image), MEAN, STD)


def test_same_pixels_as_the_cpu_transform_for_the_same_offsets(tiny_data):
    split = tiny_data["test"].select(range(6))
    data = DeviceImages(split, MEAN, STD, train=True, padding=4)
    offsets = torch.tensor([[0, 0], [8, 8], [3, 5], [8, 0], [0, 8], [4, 4]])
    flips = torch.tensor([False, True, True, False, True, False])
    augmented = augment_batch(data.images[:6], offsets, flips, 4)
    pixels = augmented.float().div(255).sub(data.mean).div(data.std)
    for k in range(6):
        expected = _cpu_view(split[k]["image"].convert("RGB"), int(offsets[k, 0]), int(offsets[k, 1]), bool(flips[k]))
        torch.testing.assert_close(pixels[k], expected, rtol=0, atol=1e-6)
    # without augmentation: exactly the eval transform
    plain = DeviceImages(split, MEAN, STD, train=False).collate([0, 1, 2])["pixel_values"]
    evaluation = cifar_transform(MEAN, STD, train=False)
    for k in range(3):
        torch.testing.assert_close(plain[k], evaluation(split[k]["image"].convert("RGB")), rtol=0, atol=1e-6)


def test_offsets_and_flips_have_the_cpu_distribution(tiny_data):
    """torchvision draws top/left uniformly in [0, 2p] and flips with probability 1/2: so does the fast path, over
    every (top, left, flip) combination, fresh each epoch."""
    data = DeviceImages(tiny_data["train"], MEAN, STD, padding=4, seed=1)
    draws = []
    for epoch in range(25):
        data.set_epoch(epoch)
        draws.append(torch.cat([data.offsets, data.flips[:, None].long()], 1))
    draws = torch.cat(draws)  # 25 epochs × 400 images
    assert set(map(tuple, draws.tolist())) == {(i, j, f) for i in range(9) for j in range(9) for f in (0, 1)}
    counts = torch.bincount(draws[:, 0], minlength=9).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.15
    assert abs(draws[:, 2].float().mean().item() - 0.5) < 0.02
    data.set_epoch(3)
    first = data.collate([5, 7])["pixel_values"]
    data.set_epoch(4)
    data.set_epoch(3)
    again = data.collate([7, 5])["pixel_values"]
    assert torch.equal(first[0], again[1]) and torch.equal(first[1], again[0])  # per (epoch, image), any batch


def test_unequal_image_sizes_are_named(tiny_data):
    import datasets
    import numpy as np
    from PIL import Image

    images = [Image.fromarray(np.zeros((32, 32, 3), np.uint8)), Image.fromarray(np.zeros((30, 32, 3), np.uint8))]
    split = datasets.Dataset.from_dict({"image": images, "label": [0, 1]}).cast_column("image", datasets.Image())
    with pytest.raises(ValueError, match="image 1 is 32×30 but image 0 is 32×32"):
        DeviceImages(split, MEAN, STD)


def test_dive_losses_equal_on_the_fast_path_and_the_cpu_path(two_stage_run, tiny_splits, tmp_path):
    """No augmentation on either path, so the batches are pixel-identical: the DiVE step's losses agree."""
    from dive_hf import DiVEConfig, DiVETrainer
    from dive_hf.data import attach_transform, class_counts

    raw, _, _ = tiny_splits
    teacher = str(two_stage_run["root"] / "teacher")
    losses = {}
    for path, train in (("cpu", attach_transform(raw, cifar_transform(MEAN, STD, train=False))),
                        ("device", DeviceImages(raw, MEAN, STD, train=False))):
        args = DiVEConfig(**stage_kwargs(tmp_path / path, max_steps=3, logging_steps=1,
                                         teacher_model_name_or_path=teacher))
        trainer = DiVETrainer(model="resnet20_cifar", args=args, train_dataset=train)
        trainer.train()
        losses[path] = [(e["loss"], e["loss_hard"], e["loss_distill"]) for e in trainer.state.log_history
                        if "loss" in e]
        assert trainer.class_counts == class_counts(raw)  # the fast path reads the counts from its source split
    assert len(losses["device"]) == 3
    assert losses["device"] == [pytest.approx(step, rel=1e-5) for step in losses["cpu"]]


def test_evaluation_and_predict_on_the_device_match_the_cpu_path(tiny_data, tiny_splits, tmp_path):
    """An eval split as DeviceImages(train=False) gives the metrics and predictions of the CPU eval transform."""
    import timm

    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer

    raw, train, test = tiny_splits
    cfg = timm.create_model("resnet20_cifar", num_classes=10).pretrained_cfg
    device_test = DeviceImages(tiny_data["test"], cfg["mean"], cfg["std"], train=False)
    trainer = BalancedSoftmaxTrainer(model="resnet20_cifar", args=BalancedSoftmaxConfig(**stage_kwargs(
        tmp_path, max_steps=2, per_device_eval_batch_size=48)), train_dataset=train, eval_dataset=device_test)
    trainer.train()
    on_device = trainer.evaluate()
    on_cpu = trainer.evaluate(eval_dataset=test)
    for key in ("eval_accuracy", "eval_balanced_accuracy", "eval_many_shot_accuracy", "eval_medium_shot_accuracy",
                "eval_few_shot_accuracy", "eval_loss"):
        assert on_device[key] == pytest.approx(on_cpu[key], rel=1e-5), key
    assert trainer.dataset_info["eval_size"] == len(tiny_data["test"])  # read from the source split
    with pytest.raises(ValueError, match=r"built with train=True .* build it with DeviceImages\(\.\.\., train=False\)"):
        trainer.evaluate(eval_dataset=DeviceImages(tiny_data["test"], cfg["mean"], cfg["std"]))
    assert on_device["eval_num_images"] == len(tiny_data["test"])
    predicted = trainer.predict(device_test).predictions
    expected = trainer.predict(test).predictions
    assert predicted.shape == (len(tiny_data["test"]), 10)
    torch.testing.assert_close(torch.as_tensor(predicted), torch.as_tensor(expected), rtol=1e-4, atol=1e-4)


def test_device_data_needs_images_of_the_model_input_size(tiny_data):
    """The CPU path crops/pads any image to the model's size; the fast path cannot, so it says so."""
    import timm

    from dive_hf.recipe import device_split

    small = tiny_data["test"].select(range(4)).map(lambda row: {"image": row["image"].resize((28, 28))})
    with pytest.raises(ValueError, match="input size 32×32, but the split's are 28×28"):
        device_split(small, timm.create_model("resnet20_cifar", num_classes=10), True, "image", "label", 0)
