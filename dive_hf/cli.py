"""The ``dive-hf`` command."""
from __future__ import annotations

import sys

__all__ = ["main"]

USAGE = """usage: dive-hf COMMAND [--flags]

commands:
  demo               both DiVE stages on the embedded data, printing many/medium/few accuracy (see `dive-hf demo --help`)
  data               summary of a split: classes, images, imbalance factor, shot groups, head → tail histogram
  evaluate MODEL     many/medium/few accuracy of a model folder or Hub id on a split; eval_results.json + plot
  virtual-examples TEACHER
                     the teacher's virtual-example distribution over its training split for a grid of τ and p
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


def data(argv: list[str]) -> int:
    from .data.sources import load_splits
    from .data.summary import DataSummaryArguments, format_summary, split_summary

    args = parse_dataclass_args(DataSummaryArguments, argv, prog="dive-hf data")
    train, evaluation = load_splits(args)
    split = train if args.which == "train" else evaluation
    if split is None:
        raise SystemExit(f"dive-hf data: this data source has no {args.which} split")
    summary = split_summary(split, args.label_column, args.many_shot_threshold, args.few_shot_threshold)
    print(format_summary(summary))
    if args.plot:
        from .plots import plot_class_counts

        plot_class_counts(summary["class_counts"], args.plot, args.many_shot_threshold, args.few_shot_threshold,
                          title=f"{summary['name'] or args.which}: training images per class")
        print(f"wrote {args.plot}")
    if args.json:
        from .atomic import write_json

        write_json(args.json, summary)
        print(f"wrote {args.json}")
    return 0


def _positional(argv: list[str], flag: str) -> list[str]:
    """Allow ``COMMAND VALUE --flags`` as well as ``COMMAND --flag VALUE --flags``."""
    return [flag, argv[0], *argv[1:]] if argv and not argv[0].startswith("-") else argv


def evaluate(argv: list[str]) -> int:
    from .evaluation import EvaluateArguments, run_evaluate

    args = parse_dataclass_args(EvaluateArguments, _positional(argv, "--model"), prog="dive-hf evaluate")
    result = run_evaluate(args)
    print(result["table"])
    print(f"wrote {result['output_dir']}/eval_results.json and per_class_accuracy.png")
    return 0


def virtual_examples(argv: list[str]) -> int:
    from .virtual_examples import VirtualExamplesArguments, run_virtual_examples

    args = parse_dataclass_args(VirtualExamplesArguments, _positional(argv, "--teacher"),
                                prog="dive-hf virtual-examples")
    result = run_virtual_examples(args)
    print(result["table"])
    print("wrote " + " and ".join(result["paths"]))
    return 0


COMMANDS = {"demo": demo, "data": data, "evaluate": evaluate, "virtual-examples": virtual_examples}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
