"""Expected errors of the command-line entry points, reported as one line instead of a traceback.

Every ``dive-hf`` subcommand (and the recipe runner) runs its ``main`` through :func:`run_main`::

    from dive_hf.errors import run_main

    def run(argv=None) -> int:
        return run_main(main, "dive-hf push", argv)   # main(argv) -> int; sys.exit(run(...)) in the entry point

API:

- ``run_main(fn, prog, argv=None, debug=None) -> int`` — call ``fn(argv)`` (``argv`` default ``sys.argv[1:]``,
  without a ``--debug`` flag of its own, see :func:`split_debug_flag`) and return its exit code. An expected error
  (:data:`EXPECTED_ERRORS`) prints ``"{prog}: error: {one_line(e)}"`` to stderr and returns :func:`exit_code` of it:
  **2** for bad input (:data:`BAD_INPUT_ERRORS`: ``ValueError`` — which includes ``json.JSONDecodeError`` and
  ``UnicodeDecodeError`` —, ``FileNotFoundError``, ``FileExistsError``, ``NotADirectoryError``,
  ``IsADirectoryError``), **1** for a run-time failure (other ``OSError``\\ s such as a full disk,
  ``FloatingPointError``, :class:`RunError` such as a failed push, a ``safetensors`` ``SafetensorError``). Any other
  exception is a bug and keeps its traceback. With ``debug`` (the ``--debug`` flag or ``DIVE_HF_DEBUG=1``) an expected
  error prints its traceback before the line.
- ``one_line(error) -> str`` — the message on one line: lines stripped and joined with spaces; the exception's type
  name first when it comes from a third-party library (``SafetensorError: …``) or the message is empty.
- ``exit_code(error) -> int`` — 2 or 1, as above.
- ``split_debug_flag(argv) -> (argv, debug)`` — removes a standalone ``--debug`` (last, or followed by another
  ``--flag``; ``--debug VALUE`` is left alone: it is ``TrainingArguments.debug``) and reads ``DIVE_HF_DEBUG``.
- ``RunError(RuntimeError)`` — raise it for an expected run-time failure that is not an ``OSError``;
  ``PushError(RunError)`` is a push that failed (nothing was published).

This module imports nothing heavy (no torch, timm or transformers), so that an entry point can use it first.
"""
from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence

__all__ = ["BAD_INPUT_ERRORS", "DEBUG_ENV", "EXPECTED_ERRORS", "PushError", "RunError", "exit_code", "one_line",
           "run_main", "split_debug_flag"]

DEBUG_ENV = "DIVE_HF_DEBUG"


class RunError(RuntimeError):
    """An expected run-time failure that is not the user's input (exit code 1, one line)."""


class PushError(RunError):
    """A push to the Hub that failed; nothing was published."""


try:  # safetensors is a dependency, but a missing one must not break error reporting
    from safetensors import SafetensorError  # the Rust reader's error: corrupt or truncated checkpoint
except ImportError:  # pragma: no cover
    SafetensorError = RunError

#: Errors of the user's input: exit code 2.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)
#: Everything an entry point reports as one line; anything else is a bug and keeps its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, OSError, FloatingPointError, RunError, SafetensorError)


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (multi-line messages collapsed), prefixed by its type name when that type
    is not a builtin or a dive_hf one (the name then says what failed) or when the message is empty."""
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    module = type(error).__module__ or ""
    if not message or not (module == "builtins" or module.startswith("dive_hf")):
        return f"{type(error).__name__}: {message}" if message else type(error).__name__
    return message


def exit_code(error: BaseException) -> int:
    """2 for bad input (:data:`BAD_INPUT_ERRORS`), 1 for any other failure."""
    return 2 if isinstance(error, BAD_INPUT_ERRORS) else 1


def split_debug_flag(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``(argv without a standalone --debug, debug wanted)``; ``DIVE_HF_DEBUG=1`` (or true/yes) also asks for it."""
    argv = list(argv)
    debug = os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    kept = []
    for i, token in enumerate(argv):
        standalone = i == len(argv) - 1 or argv[i + 1].startswith("-")
        if token == "--debug" and standalone:
            debug = True
            continue
        kept.append(token)
    return kept, debug


def run_main(fn: Callable[[list[str]], int | None], prog: str, argv: Sequence[str] | None = None,
             debug: bool | None = None) -> int:
    """Run ``fn(argv)`` and return its exit code (``None`` counts as 0); an expected error becomes one line
    ``"{prog}: error: …"`` on stderr and exit code 2 (bad input) or 1 (run-time failure)."""
    argv = sys.argv[1:] if argv is None else argv
    argv, flagged = split_debug_flag(argv)
    debug = flagged if debug is None else debug
    try:
        code = fn(argv)
    except EXPECTED_ERRORS as e:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr, flush=True)
        return exit_code(e)
    return 0 if code is None else int(code)
