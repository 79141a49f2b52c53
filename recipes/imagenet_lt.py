"""ImageNet-LT: ResNeXt-50 (or any timm architecture) teacher and DiVE student, 90 + 90 epochs, cosine lr.

    accelerate launch recipes/imagenet_lt.py --image_root /data/imagenet \\
        --train_list /data/ImageNet_LT/ImageNet_LT_train.txt --val_list /data/ImageNet_LT/ImageNet_LT_val.txt \\
        --eval_list /data/ImageNet_LT/ImageNet_LT_test.txt --bf16
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/imagenet_lt.py ...   # 8 GPUs
    accelerate launch --config_file recipes/accelerate/deepspeed_zero2.yaml recipes/imagenet_lt.py ...
    python recipes/imagenet_lt.py --arch resnet50 ...                 # ResNet-50 instead of ResNeXt-50
    python recipes/imagenet_lt.py --stage student --teacher_model_name_or_path me/dive-resnext50-teacher ...
    ... --push_to_hub --teacher_repo_id me/dive-resnext50-teacher --student_repo_id me/dive-resnext50

The global batch is 256 on any number of GPUs (per-device batch = 256 / processes); a different --global_batch_size
scales the lr linearly. Defaults: dive_hf/recipe_configs/imagenet_lt.yaml (every key is a flag). `--help` shows the main flags with their values here, `--help_all` every flag.
"""
import sys

from dive_hf.presets import recipe_path
from dive_hf.recipe import RecipeParser, recipe_main

CONFIG = recipe_path("imagenet_lt")  # dive_hf/recipe_configs/imagenet_lt.yaml, shipped in the package


def make_parser() -> RecipeParser:
    return RecipeParser(CONFIG, prog="recipes/imagenet_lt.py", description=__doc__)


def main(argv=None) -> int:
    return recipe_main(make_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
