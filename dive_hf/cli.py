"""The ``dive-hf`` command."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

__all__ = ["main"]

USAGE = """usage: dive-hf COMMAND [--flags]

commands:
  demo               both DiVE stages on the embedded data, printing many/medium/few accuracy (see `dive-hf demo --help`)
  data               summary of a split: classes, images, imbalance factor, shot groups, head → tail histogram
  evaluate MODEL     many/medium/few accuracy of a model folder or Hub id on a split; eval_results.json + plot
  card SOURCE.yaml   render a release card (hub_cards/) with the numbers of an eval_results.json
  push DIR --repo_id ID
                     publish a stage folder to the Hub (--private, --revision, --commit_message, --teacher_repo_id)
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
    from .quickstart import main as quickstart

    return quickstart(argv)


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
    lone_config = len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json"))
    return [flag, argv[0], *argv[1:]] if argv and not argv[0].startswith("-") and not lone_config else argv


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


@dataclass
class PushArguments:
    """``dive-hf push DIR --repo_id ID``."""

    folder: str | None = field(default=None, metadata={"help": "The stage folder (or first argument)."})
    repo_id: str | None = field(default=None, metadata={"help": "Hub repo id, user_or_org/name."})
    private: bool = field(default=False, metadata={"help": "Create the repo as private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (created if missing)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit message."})
    teacher_repo_id: str | None = field(default=None, metadata={"help": "A student's teacher repo, linked from "
                                                                        "its card."})

    def __post_init__(self):
        if not self.folder or not self.repo_id:
            raise ValueError("usage: dive-hf push DIR --repo_id user_or_org/name")


def push(argv: list[str]) -> int:
    from .hub import push_folder

    args = parse_dataclass_args(PushArguments, _positional(argv, "--folder"), prog="dive-hf push")
    info = push_folder(args.folder, args.repo_id, args.private, args.revision, args.commit_message,
                       teacher_repo_id=args.teacher_repo_id)
    print(f"pushed {args.folder} to {args.repo_id}: {info.commit_url}")
    return 0


@dataclass
class CardArguments:
    """``dive-hf card hub_cards/NAME.yaml --eval_results eval_results.json --output README.md``."""

    source: str | None = field(default=None, metadata={"help": "Card source YAML (or first argument)."})
    eval_results: str | None = field(default=None, metadata={"help": "The checkpoint's eval_results.json; "
                                                                     "without it the card reports no number."})
    output: str = field(default="README.md", metadata={"help": "Where to write the card."})

    def __post_init__(self):
        if not self.source:
            raise ValueError("usage: dive-hf card SOURCE.yaml [--eval_results FILE] [--output README.md]")


def card(argv: list[str]) -> int:
    import json

    import yaml

    from .atomic import write_text
    from .card import render_release_card

    args = parse_dataclass_args(CardArguments, _positional(argv, "--source"), prog="dive-hf card")
    with open(args.source, encoding="utf-8") as f:
        source = yaml.safe_load(f)
    results = json.loads(open(args.eval_results, encoding="utf-8").read()) if args.eval_results else None
    write_text(args.output, render_release_card(source, results))
    print(f"wrote {args.output}" + ("" if results else " (no eval_results.json: no accuracy reported)"))
    return 0


COMMANDS = {"card": card, "push": push, "demo": demo, "data": data, "evaluate": evaluate, "virtual-examples": virtual_examples}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


def run() -> None:
    """Console entry point: like :func:`main`, with bad input reported as one line instead of a traceback."""
    try:
        code = main()
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        command = sys.argv[1] if len(sys.argv) > 1 else ""
        print(f"dive-hf {command}: error: {e}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    run()
