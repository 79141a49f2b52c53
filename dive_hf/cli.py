"""The ``dive-hf`` command."""
from __future__ import annotations

import sys

__all__ = ["main"]

USAGE = """usage: dive-hf COMMAND [--flags]

commands:
  demo    both DiVE stages on the embedded data, printing many/medium/few accuracy (see `dive-hf demo --help`)
"""


def parse_dataclass_args(dataclass_type, argv: list[str], prog: str):
    """Parse ``argv`` into ``dataclass_type`` with ``HfArgumentParser``; a lone ``*.yaml``/``*.json`` is a config
    file of the same fields."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_type, prog=prog)
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(argv[0])[0]
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(argv[0])[0]
    return parser.parse_args_into_dataclasses(args=argv)[0]


def demo(argv: list[str]) -> int:
    from .quickstart import QuickstartArguments, run_quickstart

    args = parse_dataclass_args(QuickstartArguments, argv, prog="dive-hf demo")
    results = run_quickstart(args)
    print("\n" + results["table"])
    print(f"\nwrote {args.output_dir}/teacher and {args.output_dir}/student (Hub-ready) in {results['wall_time_s']} s")
    return 0


COMMANDS = {"demo": demo}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
