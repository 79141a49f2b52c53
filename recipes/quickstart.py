"""Quickstart: both DiVE stages on the embedded data (what `make demo` runs).

    python recipes/quickstart.py                                  # demo preset, ResNet-20 (CIFAR), ~4 min on 2 CPU cores
    python recipes/quickstart.py --arch resnet32_cifar --preset full --teacher_epochs 200 --student_epochs 200
    python recipes/quickstart.py --temperature 6 --power 1.0      # study τ and p
    accelerate launch --multi_gpu --num_processes 2 recipes/quickstart.py
"""
import sys

from dive_hf.cli import demo

if __name__ == "__main__":
    sys.exit(demo(sys.argv[1:]))
