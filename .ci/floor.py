"""The lowest versions pyproject.toml allows, installed beside the venv and checked (`make test-floor`).

    python .ci/floor.py install DIR   pip-install the floors of FLOORED, plus whatever pip's resolver says they need
                                      below (or beyond) the venv's own packages, into DIR (--target, --no-deps)
    python .ci/floor.py check DIR     with PYTHONPATH=DIR: print the versions imported; fail unless each FLOORED
                                      package imported is its pyproject floor (from DIR, or the venv's when that is
                                      the floor already) and every requirement of the packages in DIR is met by
                                      what this interpreter sees
"""
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The pure-Python packages whose floors are tested (torch/torchvision stay the venv's: compiled, 6 GB).
FLOORED = ("transformers", "timm", "accelerate", "datasets", "evaluate", "huggingface_hub")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def floors() -> dict[str, str]:
    """{package: floor} of FLOORED, read from pyproject.toml's dependencies (`name>=X`)."""
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    found = {_norm(m[0]): m[1] for m in re.findall(r'"([A-Za-z0-9_.-]+)>=([^",;]+)"', deps)}
    missing = [p for p in FLOORED if _norm(p) not in found]
    if missing:
        sys.exit(f"pyproject.toml has no `>=` floor for {missing}")
    return {p: found[_norm(p)] for p in FLOORED}


def install(target: str) -> None:
    pins = [f"{p}=={v}" for p, v in floors().items()]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # What the floors need that the venv lacks or has in a version they refuse (e.g. datasets 3.0 → dill < 0.3.9).
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--report", str(report),
                        *pins], check=True)
        wanted = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in json.loads(report.read_text())["install"]]
    print("floor set:", " ".join(wanted))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", target, "--no-deps", *wanted],
                   check=True)


def check(target: str) -> None:
    import importlib
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.version import Version

    where = Path(target).resolve()
    bad = []
    for pkg, floor in floors().items():
        module = importlib.import_module(pkg)
        origin = Path(module.__file__).resolve()
        print(f"{pkg:16} {module.__version__:12} {origin.parent}")
        if Version(module.__version__) != Version(floor):  # from DIR, or the venv's when that is the floor already
            bad.append(f"{pkg} {module.__version__} imported (from {origin.parent}), floor is {floor}")
    import torch

    print(f"{'torch':16} {torch.__version__:12} (the venv's)")
    # Every requirement of the packages in DIR, against the distributions this interpreter resolves first.
    for dist in md.distributions(path=[str(where)]):
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                bad.append(f"{dist.metadata['Name']} needs {req}: not installed")
                continue
            if not req.specifier.contains(have, prereleases=True):
                bad.append(f"{dist.metadata['Name']} needs {req}: {have} found")
    if bad:
        sys.exit("floor check failed:\n  " + "\n  ".join(bad))
    print(f"floor check: every floor imported; the requirements of {where}/* are met")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("install", "check"):
        sys.exit(__doc__)
    {"install": install, "check": check}[sys.argv[1]](sys.argv[2])
