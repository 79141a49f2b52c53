"""Data: the embedded default dataset, long-tailed splits, shot groups and transforms."""
from .long_tail import LONG_TAIL_KEY, class_counts, label_names, long_tail_counts, make_long_tailed, shot_groups
from .synthetic import EMBEDDED_PRESETS, EmbeddedPreset, embedded_class_names, load_embedded
from .transforms import attach_transform, cifar_transform, model_transform

__all__ = [
    "EMBEDDED_PRESETS", "EmbeddedPreset", "LONG_TAIL_KEY", "attach_transform", "cifar_transform", "class_counts",
    "embedded_class_names", "label_names", "load_embedded", "long_tail_counts", "make_long_tailed",
    "model_transform", "shot_groups",
]
