"""dive_hf: DiVE (Distilling Virtual Examples for Long-tailed Recognition, ICCV 2021) for any timm backbone.

Importing the package registers the CIFAR ResNets (``resnet20_cifar`` … ``resnet110_cifar``) with timm: at once
when timm is already imported, else the moment it is (so ``import dive_hf`` and ``dive-hf --help`` stay fast:
torch, timm and transformers load only when something needs them). The public names below load on first use
(PEP 562), so ``from dive_hf import DiVETrainer`` works as usual.
"""
import importlib
import sys

from ._version import __version__  # noqa: F401
from .lazy import lazy_exports

#: Public name → the submodule that defines it.
_EXPORTS = {
    "BalancedSoftmaxConfig": "config", "DiVEConfig": "config",
    "balanced_softmax_cross_entropy": "losses", "dive_loss": "losses", "virtual_targets": "losses",
    "LongTailAccuracy": "metrics", "LongTailMetrics": "metrics", "long_tail_accuracy": "metrics",
    "make_compute_metrics": "metrics",
    "BalancedSoftmaxTrainer": "trainer", "CrossEntropyTrainer": "trainer", "DiVETrainer": "trainer",
    "virtual_example_distribution": "virtual_examples",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


class _RegisterModelsAfterTimm:
    """A ``sys.meta_path`` finder that only watches for ``timm``: the loader of timm's spec runs timm's module and
    then imports :mod:`dive_hf.models` (which registers the CIFAR ResNets), and the finder removes itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run_module = spec.loader.exec_module

            def exec_module(module):  # a spec only looked at (importlib.util.find_spec) is never executed
                run_module(module)
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                importlib.import_module(".models", __name__)

            spec.loader.exec_module = exec_module
        return spec


def _register_models_with_timm() -> None:
    if "timm" in sys.modules:
        importlib.import_module(".models", __name__)
    elif not any(isinstance(f, _RegisterModelsAfterTimm) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterModelsAfterTimm())


_register_models_with_timm()
