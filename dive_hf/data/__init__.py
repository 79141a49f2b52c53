"""Data: the embedded default dataset, user benchmark splits, long-tailed splits, shot groups and transforms."""
from .device_images import DeviceImages
from .long_tail import LONG_TAIL_KEY, class_counts, label_names, long_tail_counts, make_long_tailed, shot_groups
from .sources import DataArguments, load_splits
from .split_list import load_inat_json, load_split_list
from .summary import format_summary, split_summary
from .synthetic import EMBEDDED_PRESETS, EmbeddedPreset, embedded_class_names, load_embedded
from .transforms import attach_transform, cifar_transform, model_transform

__all__ = [
    "DataArguments", "DeviceImages", "EMBEDDED_PRESETS", "EmbeddedPreset", "LONG_TAIL_KEY", "attach_transform", "cifar_transform",
    "class_counts", "embedded_class_names", "format_summary", "label_names", "load_embedded", "load_inat_json",
    "load_split_list", "load_splits", "long_tail_counts", "make_long_tailed", "model_transform", "shot_groups",
    "split_summary",
]
