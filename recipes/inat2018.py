"""iNaturalist 2018: ResNet-50 teacher and DiVE student, 200 + 200 epochs, cosine lr.

    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/inat2018.py \\
        --image_root /data/inat2018 --inat_train_json /data/inat2018/train2018.json \\
        --inat_val_json /data/inat2018/val2018.json --bf16
    accelerate launch --config_file recipes/accelerate/multi_node.yaml recipes/inat2018.py ...   # 2 machines
    ... --num_train_epochs 90                                          # decoupling's short schedule

Defaults: dive_hf/recipe_configs/inat2018.yaml (every key is a flag). `--help` shows the main flags with their values here, `--help_all` every flag.
"""
import sys

from dive_hf.presets import recipe_path
from dive_hf.recipe import RecipeParser, recipe_main

CONFIG = recipe_path("inat2018")  # dive_hf/recipe_configs/inat2018.yaml, shipped in the package


def make_parser() -> RecipeParser:
    return RecipeParser(CONFIG, prog="recipes/inat2018.py", description=__doc__)


def main(argv=None) -> int:
    return recipe_main(make_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
