"""The ``dive-hf`` command.

:func:`main` runs a subcommand and lets its errors propagate (for use from Python); the console entry point
:func:`run` goes through :func:`run_cli`, which reports an expected error as one line ``dive-hf CMD: error: …`` on
stderr with exit code 2 (bad input) or 1 (run-time failure), and a traceback only with ``--debug`` or
``DIVE_HF_DEBUG=1`` (see :mod:`dive_hf.errors`).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DEBUG_ENV, run_main, split_debug_flag

__all__ = ["main", "run", "run_cli"]

USAGE = """usage: dive-hf COMMAND [--flags]

commands:
  demo               both DiVE stages on the embedded data, printing many/medium/few accuracy (see `dive-hf demo --help`)
  data               summary of a split: classes, images, imbalance factor, shot groups, head → tail histogram
  evaluate MODEL     many/medium/few accuracy of a model folder or Hub id on a split; eval_results.json + plot
  card SOURCE.yaml --output FILE
                     render a release card (hub_cards/) with the numbers of an eval_results.json
  card DIR           re-render a stage folder's own card (DIR/README.md; --repo_id for the loading snippets)
  push DIR --repo_id ID
                     publish a stage folder to the Hub (--dry_run lists the files only; --private, --revision,
                     --commit_message, --teacher_repo_id)
  virtual-examples TEACHER
                     the teacher's virtual-example distribution over its training split for a grid of τ and p

Errors are reported as one line (exit code 2: bad input, 1: run-time failure); --debug (or DIVE_HF_DEBUG=1) adds
the traceback. dive-hf --version prints the version.
"""


def parse_dataclass_args(dataclass_type, argv: list[str], prog: str):
    """Parse ``argv`` into ``dataclass_type`` with ``HfArgumentParser``; a lone ``*.yaml``/``*.json`` is a config
    file of the same fields."""
    import json

    import yaml
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_type, prog=prog, allow_abbrev=False)  # --privat is not --private

    def error(message: str):  # argparse prints the whole usage and exits; one line is clearer
        raise ValueError(f"{message} (see {prog} --help)")

    parser.error = error
    config_file = argv[0] if len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json")) else None
    try:
        if config_file and config_file.endswith(".json"):
            return parser.parse_json_file(config_file)[0]
        if config_file:
            return parser.parse_yaml_file(config_file)[0]
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config_file}: not a valid {'JSON' if config_file.endswith('.json') else 'YAML'} "
                         f"file of {prog} flags ({e})") from None
    except ValueError as e:
        raise ValueError(f"{config_file}: {e}") from None
    parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        raise ValueError(f"unrecognized arguments: {' '.join(remaining)} (see {prog} --help)")
    return parsed


def demo(argv: list[str]) -> int:
    """The quickstart; into its own folder (no --output_dir given) it replaces the last demo's, like ``make demo``,
    so that it can be run again and again."""
    from .quickstart import main as quickstart

    own_folder = not any(a.split("=")[0] in ("--output_dir", "--output-dir", "--resume_from_checkpoint",
                                             "--resume-from-checkpoint", "--overwrite") for a in argv)
    return quickstart(["--overwrite", *argv] if own_folder else argv)


def data(argv: list[str]) -> int:
    from .data.sources import load_splits
    from .data.summary import DataSummaryArguments, format_summary, split_summary

    args = parse_dataclass_args(DataSummaryArguments, argv, prog="dive-hf data")
    inputs = {flag: getattr(args, flag) for flag in ("dataset", "train_list", "eval_list", "val_list",
                                                     "inat_train_json", "inat_val_json")}
    if args.plot and args.json and Path(args.plot).absolute() == Path(args.json).absolute():
        raise ValueError(f"--plot and --json both name {args.json}: give each its own file")
    if args.plot:
        check_output_file(args.plot, "--plot", _is_matplotlib_png, "a figure written by dive_hf (a Matplotlib "
                          "PNG)", args.overwrite, inputs)
    if args.json:
        check_output_file(args.json, "--json", _is_data_summary, "a `dive-hf data` summary", args.overwrite, inputs)
    train, evaluation = load_splits(args)
    split = train if args.which == "train" else evaluation
    if split is None:
        raise ValueError(f"--which {args.which}: this data source has no {args.which} split")
    training_counts = None
    if args.which != "train":  # group an evaluation split by its classes' *training* counts when the data has them
        if train is not None:
            from .data.long_tail import class_counts

            training_counts = class_counts(train, args.split_label_column)
        else:
            print(f"note: no training split given, so shot groups use the {args.which} split's own counts")
    summary = split_summary(split, args.split_label_column, args.many_shot_threshold, args.few_shot_threshold,
                            training_counts)
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
    dry_run: bool = field(default=False, metadata={"help": "Only list the files (and sizes) a push would send; "
                                                           "write and send nothing."})

    def __post_init__(self):
        from .hub import check_repo_id

        if not self.folder or not self.repo_id:
            raise ValueError("usage: dive-hf push DIR --repo_id user_or_org/name")
        check_repo_id(self.repo_id)  # before the folder is read
        if self.teacher_repo_id:
            check_repo_id(self.teacher_repo_id, "--teacher_repo_id")


def push(argv: list[str]) -> int:
    args = parse_dataclass_args(PushArguments, _positional(argv, "--folder"), prog="dive-hf push")
    from .hub import push_folder  # after parsing: --help stays fast (no torch, timm)

    info = push_folder(args.folder, args.repo_id, args.private, args.revision, args.commit_message,
                       teacher_repo_id=args.teacher_repo_id, dry_run=args.dry_run)
    if not args.dry_run:
        print(f"pushed {args.folder} to {args.repo_id}: {info.commit_url}")
    return 0


@dataclass
class CardArguments:
    """``dive-hf card hub_cards/NAME.yaml --eval_results eval_results.json --output DIR/README.md``, or
    ``dive-hf card STAGE_DIR`` to re-render a stage folder's own card in place."""

    source: str | None = field(default=None, metadata={"help": "Release card source YAML, or a stage folder (or "
                                                                "first argument)."})
    eval_results: str | None = field(default=None, metadata={"help": "The checkpoint's eval_results.json (release "
                                                                     "cards; without it the card reports no number)."})
    output: str | None = field(default=None, metadata={"help": (
        "Where to write the card (a file, or a folder for FOLDER/README.md). Required for a release card; a stage "
        "folder's card is SOURCE/README.md.")})
    repo_id: str | None = field(default=None, metadata={"help": "Stage folder only: the Hub id in the card's "
                                                                "loading snippets (default: its hub_model_id)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output that is not a dive_hf "
                                                             "model card."})

    def __post_init__(self):
        if not self.source:
            raise ValueError("usage: dive-hf card SOURCE.yaml --output FILE [--eval_results FILE] | dive-hf card DIR")
        if Path(self.source).is_dir():
            card = str(Path(self.source) / "README.md")
            if self.output and Path(self.output) not in (Path(card), Path(self.source)):
                raise ValueError(f"--output {self.output}: a stage folder's card is written into the folder "
                                 f"({card}); drop --output")
            if self.eval_results:
                raise ValueError(f"--eval_results {self.eval_results}: a stage folder's card uses the folder's own "
                                 f"eval_results.json; drop the flag")
            self.output = card
            if self.repo_id:
                from .hub import check_repo_id

                check_repo_id(self.repo_id)
        else:
            if self.repo_id:
                raise ValueError(f"--repo_id {self.repo_id}: a release card takes its repo id from {self.source}")
            if not self.output:
                raise ValueError(f"--output is required with a card source ({self.source}): say where the card goes, "
                                 f"e.g. --output outputs/{Path(self.source).stem}/README.md (there is no default, so "
                                 f"that a card never replaces an unrelated README.md)")
            if Path(self.output).is_dir():
                self.output = str(Path(self.output) / "README.md")


def is_dive_card(path: str | Path) -> bool:
    """Whether ``path`` is a model card written by dive_hf: YAML front matter whose ``tags`` hold ``dive-hf`` (the
    template's card data always does)."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if not text.startswith("---"):
        return False
    front, sep, _ = text[3:].partition("\n---")
    try:
        meta = yaml.safe_load(front) if sep else None
    except yaml.YAMLError:
        return False
    return isinstance(meta, dict) and "dive-hf" in (meta.get("tags") or [])


def _is_matplotlib_png(path: Path) -> bool:
    """A PNG that Matplotlib wrote (how every dive_hf figure is written): its ``Software`` text chunk says so."""
    with open(path, "rb") as f:
        head = f.read(256)
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"Software\x00Matplotlib" in head


def _is_data_summary(path: Path) -> bool:
    """A JSON summary written by ``dive-hf data --json``."""
    import json

    try:
        summary = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(summary, dict) and {"classes", "images", "class_counts", "groups", "groups_by"} <= set(summary)


def check_output_file(path: str | Path, flag: str, is_ours, what: str, overwrite: bool = False,
                      inputs: dict[str, str | None] | None = None) -> None:
    """The guard of a file a command writes where the user says (``card --output``, ``data --json/--plot``): a folder
    is refused, an existing file is replaced only when ``is_ours(path)`` says it is one of the kind the command writes
    (``what``) or with ``--overwrite``, and an input of the command (``inputs``: flag → path) never."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder; give a file name")
    if not path.exists():
        return
    for name, value in (inputs or {}).items():
        if value and Path(value).exists() and os.path.samefile(value, path):
            raise FileExistsError(f"{flag} {path} is this command's input (--{name}); choose another {flag}")
    if not overwrite and not is_ours(path):
        raise FileExistsError(f"{flag} {path} exists and is not {what}; choose another {flag} or pass --overwrite "
                              f"to replace it")


def _read_mapping(path: str, what: str, kind: str = "JSON", expected: str = "an object") -> dict:
    """A JSON (or YAML) file that must hold a mapping, with one-line errors naming ``what`` and ``path``."""
    import json

    import yaml

    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path}: no such file") from None
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path}: not valid {kind} ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path}: expected {expected}, got {type(data).__name__}")
    return data


def card(argv: list[str]) -> int:
    # The first argument is always the source: a lone YAML here is a card source, not a file of flags.
    argv = ["--source", *argv] if argv and not argv[0].startswith("-") else argv
    args = parse_dataclass_args(CardArguments, argv, prog="dive-hf card")
    from .atomic import write_text
    from .card import render_release_card, write_folder_card  # after parsing: --help stays fast

    output = Path(args.output)
    check_output_file(output, "--output", is_dive_card, "a dive_hf model card (no 'dive-hf' tag in its front matter)",
                      args.overwrite, {"source": args.source, "eval_results": args.eval_results})
    if Path(args.source).is_dir():
        from .hub import CONFIG_NAME, read_config

        config = read_config(Path(args.source) / CONFIG_NAME)
        write_folder_card(args.source, args.repo_id or (config.get("dive") or {}).get("hub_model_id"))
        print(f"wrote {output}")
        return 0
    source = _read_mapping(args.source, "card source", "YAML", "a YAML mapping (repo_id, stage, backbone, …)")
    results = _read_mapping(args.eval_results, "--eval_results") if args.eval_results else None
    if results is not None:
        lacking = [k for k in ("many_shot_threshold", "few_shot_threshold", "metrics") if k not in results]
        if lacking:
            raise ValueError(f"--eval_results {args.eval_results} lacks {', '.join(map(repr, lacking))}: not an "
                             f"eval_results.json written by dive_hf")
    try:
        text = render_release_card(source, results)
    except ValueError as e:
        raise ValueError(f"{args.source}: {e}") from None
    write_text(output, text)
    print(f"wrote {output}" + ("" if results else " (no eval_results.json: no accuracy reported)"))
    return 0


COMMANDS = {"card": card, "push": push, "demo": demo, "data": data, "evaluate": evaluate,
            "virtual-examples": virtual_examples}


def main(argv: list[str] | None = None) -> int:
    """Run ``dive-hf COMMAND ...``; errors propagate (the console entry point reports them: :func:`run_cli`)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        from ._version import __version__

        print(f"dive-hf {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"dive-hf: error: unknown command {argv[0]!r}; choose one of {', '.join(sorted(COMMANDS))} "
              f"(dive-hf --help)", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


def run_cli(argv: list[str] | None = None) -> int:
    """:func:`main` with expected errors reported as one line ``dive-hf CMD: error: …`` (exit code 2 for bad input,
    1 for a run-time failure); ``--debug`` anywhere as a flag of its own, or ``DIVE_HF_DEBUG=1``, adds the
    traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    leading = argv[:1] == ["--debug"]  # dive-hf --debug COMMAND ...
    argv, debug = split_debug_flag(argv[1:] if leading else argv)
    prog = f"dive-hf {argv[0]}" if argv and argv[0] in COMMANDS else "dive-hf"
    if not (debug or leading):
        return run_main(main, prog, argv, debug=False)
    previous = os.environ.get(DEBUG_ENV)
    os.environ[DEBUG_ENV] = "1"  # also for commands that report their own errors (dive-hf demo is a recipe) ...
    try:
        return run_main(main, prog, argv, debug=True)
    finally:  # ... for this command only: the process (a test session, a notebook) goes on without it
        if previous is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = previous


def run() -> None:
    """Console entry point (``dive-hf``)."""
    sys.exit(run_cli())


if __name__ == "__main__":
    run()
