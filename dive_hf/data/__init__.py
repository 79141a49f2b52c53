"""Data: the embedded default dataset, user benchmark splits, long-tailed splits, shot groups and transforms.

The names below load on first use (PEP 562): ``dive-hf data --help`` needs no torch (only the transforms and
:class:`DeviceImages` do).
"""
from ..lazy import lazy_exports

#: Public name → the submodule that defines it.
_EXPORTS = {
    "DeviceImages": "device_images",
    **dict.fromkeys(["LONG_TAIL_KEY", "class_counts", "label_names", "long_tail_counts", "make_long_tailed",
                     "shot_groups"], "long_tail"),
    "DataArguments": "sources", "load_splits": "sources",
    "load_inat_json": "split_list", "load_split_list": "split_list",
    "format_summary": "summary", "split_summary": "summary",
    **dict.fromkeys(["EMBEDDED_PRESETS", "EmbeddedPreset", "embedded_class_names", "load_embedded"], "synthetic"),
    **dict.fromkeys(["attach_transform", "cifar_transform", "model_transform"], "transforms"),
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
