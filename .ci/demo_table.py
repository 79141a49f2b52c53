"""Compare the table `make demo` just printed with the one README.md shows (run by `make demo` after the demo).

    python .ci/demo_table.py OUTPUT_DIR [README.md]     prints whether OUTPUT_DIR/results.json has README's numbers

The demo is deterministic on one machine, but its numbers depend on the CPU: torch and oneDNN pick vector kernels by
the instruction set (AVX-512, AVX2, ...) and split sums over the threads (one per core), so floats round
differently, and 12 epochs of training amplify the difference to points per shot group. So a mismatch is reported, not failed; README.md names the CPU its table was
printed on. Exit code 1 only when README.md has no demo table to compare with (the check would be silently gone).
"""
import json
import re
import sys
from pathlib import Path

ROWS = {"teacher": "teacher (BSCE)", "student": "student (DiVE)"}
KEYS = ("eval_accuracy", "eval_many_shot_accuracy", "eval_medium_shot_accuracy", "eval_few_shot_accuracy")


def readme_rows(readme: str) -> dict[str, list[str]]:
    """``{"teacher": ["67.60", ...], "student": [...]}`` from the demo table in README.md's "What `make demo`
    does" section (the first table after that heading)."""
    section = readme.split("## What `make demo` does", 1)[-1]
    rows = {}
    for stage, label in ROWS.items():
        found = re.search(rf"^{re.escape(label)}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", section, re.M)
        if found:
            rows[stage] = list(found.groups())
    return rows


def run_rows(results: dict) -> dict[str, list[str]]:
    """The same rows from a run's ``results.json``, formatted as the printed table formats them."""
    return {stage: [f"{100 * results[stage][key]:.2f}" for key in KEYS]
            for stage in ROWS if isinstance(results.get(stage), dict) and all(k in results[stage] for k in KEYS)}


def compare(results: dict, readme: str) -> tuple[bool, str]:
    """``(same, message)``."""
    expected, got = readme_rows(readme), run_rows(results)
    if set(expected) != set(ROWS):
        raise ValueError("README.md has no demo table (rows 'teacher (BSCE)' and 'student (DiVE)' under "
                         "\"What `make demo` does\")")
    if expected == {k: got.get(k) for k in expected}:
        return True, "The table matches README.md's."
    lines = [f"  {ROWS[s]:<15} README {'  '.join(expected[s])}   this run {'  '.join(got.get(s, ['–'] * 4))}"
             for s in ROWS if expected[s] != got.get(s)]
    try:
        import torch

        here = (f"this machine's torch uses {torch.backends.cpu.get_cpu_capability()} kernels and "
                f"{torch.get_num_threads()} threads")
    except Exception:  # noqa: BLE001 - the note is informative only
        here = "this machine's CPU kernels are unknown"
    return False, ("This run's numbers differ from README.md's table (overall / many / medium / few):\n"
                   + "\n".join(lines) + f"\nREADME's table was printed on the CPU it names; {here}. The demo is "
                   "deterministic on one machine, but its numbers depend on the CPU's instruction set and thread count "
                   "(see README, \"Why your numbers may differ\").")


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print(__doc__)
        return 2
    output_dir = Path(argv[0])
    readme = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parent.parent / "README.md")
    results = json.loads((output_dir / "results.json").read_text())
    try:
        same, message = compare(results, readme.read_text())
    except ValueError as e:
        print(f"demo_table: {readme}: {e}", file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
