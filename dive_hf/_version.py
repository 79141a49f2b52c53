"""The package version, in a leaf module: modules that record it (run logs, ``config.json``) import it from here
rather than from ``dive_hf/__init__.py``, which imports them (an import cycle)."""
__version__ = "0.1.0"
