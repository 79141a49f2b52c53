"""Quickstart: both DiVE stages on the embedded data (what `make demo` runs).

    python recipes/quickstart.py                                  # demo preset, ResNet-20 (CIFAR), ~3 min on 2 CPU cores
    python recipes/quickstart.py --arch resnet32_cifar --dataset embedded:full --num_train_epochs 200
    python recipes/quickstart.py --stage student --sweep 3,0.5 6,1   # study τ and p (keeps each student)
    accelerate launch --multi_gpu --num_processes 2 recipes/quickstart.py
"""
import sys

from dive_hf.quickstart import main, quickstart_parser


def make_parser():
    return quickstart_parser(prog="recipes/quickstart.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="recipes/quickstart.py"))
