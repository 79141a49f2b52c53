"""Places-LT: an ImageNet-pretrained ResNet-152 fine-tuned as the teacher, then a DiVE student (30 + 30 epochs).

The long-tail literature's fine-tune benchmark (OLTR, Balanced Meta-Softmax): 365 scene classes, 4,980 → 5 training
images per class; the backbone at lr 0.001 and the new head at 0.1, × 0.1 at epochs 10 and 20.

    accelerate launch recipes/places_lt.py --image_root /data/places365 \\
        --train_list /data/Places_LT/Places_LT_train.txt --val_list /data/Places_LT/Places_LT_val.txt \\
        --eval_list /data/Places_LT/Places_LT_test.txt --bf16
    ... --arch resnet152 --pretrained_path /weights/resnet152.safetensors   # your own ImageNet weights, offline
    ... --teacher_arch resnet152.tv_in1k --arch resnet18.tv_in1k --stage teacher student_bsce student
                                            # compression: ResNet-152 teacher → ResNet-18 student (+ its BSCE row)
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/places_lt.py ...   # 8 GPUs

timm's weights come from the Hub or its cache (`hf download timm/resnet152.tv_in1k` once where the Hub is reachable);
offline, --pretrained_path takes a .safetensors file or a model folder. Defaults: dive_hf/recipe_configs/places_lt.yaml
(every key is a flag). `--help` shows the main flags with their values here, `--help_all` every flag.
"""
import sys

from dive_hf.presets import recipe_path
from dive_hf.recipe import RecipeParser, recipe_main

CONFIG = recipe_path("places_lt")  # dive_hf/recipe_configs/places_lt.yaml, shipped in the package


def make_parser() -> RecipeParser:
    return RecipeParser(CONFIG, prog="recipes/places_lt.py", description=__doc__)


def main(argv=None) -> int:
    return recipe_main(make_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
