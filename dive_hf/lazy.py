"""Lazy public names for a package's ``__init__`` (PEP 562): ``import dive_hf`` and ``dive-hf --help`` stay fast,
torch, timm and transformers load only when a name that needs them is first used."""
from __future__ import annotations

import importlib
import importlib.util

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str], namespace: dict):
    """``(__getattr__, __dir__)`` for ``package``: a name of ``exports`` (name → submodule) is imported from its
    submodule on first access and kept in ``namespace`` (the package's globals); any other public name is tried as
    a submodule (``dive_hf.trainer``)."""

    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
            namespace[name] = value
            return value
        if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
