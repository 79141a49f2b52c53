"""What ran: the command line, world size, batch sizes, precision, versions and git commit of a training stage —
kept in ``run_log.json`` next to the weights and summarised in the model card."""
from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
from pathlib import Path

from ._version import __version__
from .names import RUN_LOG_NAME

__all__ = ["RUN_LOG_NAME", "command_line", "describe_batch", "describe_schedule", "git_commit", "package_versions",
           "run_log", "training_summary"]


def _secret(flag: str) -> bool:
    """``--hub_token``, ``--hub-token``, ``--token``, … (any flag naming a token)."""
    return flag.startswith("-") and flag.lstrip("-").lower().replace("-", "_").endswith("token")


def _process_argv(pid: int) -> list[str]:
    try:
        return [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if a]
    except OSError:
        return []


def _parent_pid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1]) or None
    except (OSError, ValueError):
        return None
    return None


# launcher (console script or module) → (kind, how the command is written back)
_LAUNCHERS = {"accelerate": ("accelerate", ["accelerate"]), "accelerate-launch": ("accelerate", ["accelerate-launch"]),
              "accelerate.commands.launch": ("accelerate", ["accelerate", "launch"]),
              "accelerate.commands.accelerate_cli": ("accelerate", ["accelerate"]),
              "torchrun": ("torchrun", ["torchrun"]), "torch.distributed.run": ("torchrun", ["torchrun"]),
              "torch.distributed.launch": ("torchrun", ["python", "-m", "torch.distributed.launch"])}


@functools.cache
def launcher() -> tuple[str, list[str] | None]:
    """How this process was started — ``accelerate`` (``accelerate launch``), ``torchrun`` or ``python`` — and the
    launcher's own command line, read from the parent processes (Linux ``/proc``): what a reader needs to reproduce a
    multi-process run, which the script's ``sys.argv`` alone does not say."""
    pid = os.getpid()
    for _ in range(4):  # worker → (elastic agent →) launcher
        pid = _parent_pid(pid)
        if pid is None:
            break
        argv = _process_argv(pid)
        # the launcher is argv[0] (a console script), or argv[1] ("python …/bin/accelerate") or "python -m torchrun"
        for i in range(min(3, len(argv))):
            name = Path(argv[i]).name
            if name in _LAUNCHERS and (i == 0 or argv[i - 1] == "-m" or Path(argv[0]).name.startswith("python")):
                kind, written = _LAUNCHERS[name]
                return kind, [*written, *argv[i + 1:]]
    return "python", None


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process — the launcher's (``accelerate launch …``, ``torchrun …``) when there
    was one — with any token value replaced by ``REDACTED``."""
    if argv is None:
        argv = launcher()[1] or sys.argv
    argv = list(argv)
    for i, arg in enumerate(argv):
        flag, eq, _ = arg.partition("=")
        if _secret(flag) and eq:
            argv[i] = f"{flag}=REDACTED"
        elif i > 0 and _secret(argv[i - 1]) and "=" not in argv[i - 1] and not arg.startswith("--"):
            argv[i] = "REDACTED"
    if argv and argv[0].endswith(".py"):
        argv = ["python", os.path.relpath(argv[0]) if Path(argv[0]).is_absolute() else argv[0], *argv[1:]]
    return shlex.join(argv)


@functools.cache
def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's numbers."""
    import accelerate
    import datasets
    import timm
    import torch
    import transformers

    return {"dive_hf": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "datasets": datasets.__version__, "python": sys.version.split()[0]}


@functools.cache
def git_commit(path: str | Path | None = None) -> str | None:
    """The git commit of the checkout holding ``path`` (default: the dive_hf sources), with ``-dirty`` when it has
    uncommitted changes; ``None`` outside a git checkout. Asked once per process (two ``git`` calls), not at every
    checkpoint save."""
    path = Path(path or Path(__file__).parent)
    try:
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


def precision(args) -> str:
    """bf16 / fp16 from the flags, or from the accelerate config (``mixed_precision``); else fp32."""
    mixed = "bf16" if args.bf16 else "fp16" if args.fp16 else getattr(args, "mixed_precision", None)
    return mixed if mixed in ("bf16", "fp16", "fp8") else "fp32"


def describe_batch(per_device: int, world_size: int, accumulation: int) -> str:
    return (f"{per_device} per device × {world_size} process{'es' if world_size > 1 else ''} × {accumulation} "
            f"accumulation step{'s' if accumulation > 1 else ''}")


def describe_schedule(args, end_epoch: float = 0) -> str:
    """The learning-rate schedule of a run that ends at ``end_epoch`` (0: unknown): multistep milestones and a
    warm-up (in epochs) beyond the end are said to be beyond it, not listed as if they happened."""
    schedule = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    if schedule == "multistep":
        reached = [e for e in args.lr_decay_epochs if not end_epoch or e <= end_epoch]
        beyond = [e for e in args.lr_decay_epochs if e not in reached]
        schedule += (f" (×{args.lr_decay_factor} at epochs {', '.join(f'{e:g}' for e in reached)})" if reached
                     else " (no decay reached)")
        if beyond:
            schedule += (f"; the milestones at epochs {', '.join(f'{e:g}' for e in beyond)} lie beyond the run's "
                         f"{end_epoch:.3g} epochs")
    if args.warmup_epochs:
        warmup = f"{args.warmup_epochs:g} epochs"
        if end_epoch and args.warmup_epochs > end_epoch:
            warmup += f", never finished (the run has {end_epoch:.3g} epochs)"
    else:
        warmup = (f"{args.warmup_steps:.0%} of the steps" if 0 < args.warmup_steps < 1
                  else f"{args.warmup_steps:g} steps")
    return f"{schedule}, warm-up {warmup}"


def _end_epoch(trainer) -> float:
    """The epoch a run ends at: ``num_train_epochs``, or for a ``max_steps`` run the epochs those steps make
    (known once it has trained; 0 before)."""
    args, state = trainer.args, trainer.state
    if args.max_steps <= 0:
        return float(args.num_train_epochs)
    epoch, step = getattr(state, "epoch", None) or 0, getattr(state, "global_step", 0) or 0
    return epoch * args.max_steps / step if step else 0.0


def training_summary(trainer) -> dict:
    """The training settings a card reports, from the trainer's arguments and environment (stored in the ``dive``
    block of ``config.json`` as ``training`` so that the card can be rendered again from the folder alone)."""
    args = trainer.args
    world = args.world_size
    versions = package_versions()
    end = _end_epoch(trainer)
    summary = {
        "stage": trainer._stage,
        "command": f"`{command_line()}`",
        "epochs": (args.num_train_epochs if args.max_steps <= 0
                   else f"{args.max_steps} steps" + (f" ({end:.3g} epochs)" if end else "")),
        "optimizer": str(args.optim.value if hasattr(args.optim, "value") else args.optim),
        "learning rate": args.learning_rate,
        "lr schedule": describe_schedule(args, end),
        "weight decay": args.weight_decay,
        "batch": describe_batch(args.per_device_train_batch_size, world, args.gradient_accumulation_steps),
        "effective batch": args.per_device_train_batch_size * world * args.gradient_accumulation_steps,
        "processes": world,
        "precision": precision(args) + (", channels_last" if args.channels_last else "")
                     + (", torch.compile" if args.torch_compile else ""),
        "seed": args.seed,
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items() if k != "python"),
        "git commit": git_commit() or "not a git checkout",
    }
    if getattr(args, "layer_decay", None):  # (the initial weights have their own line at the card's top)
        summary["layer-wise lr decay"] = args.layer_decay
    if getattr(args, "classifier_lr", None) is not None:
        summary["classifier learning rate"] = args.classifier_lr
    if getattr(trainer, "resume_changes", None):
        summary["changed at resume"] = "; ".join(trainer.resume_changes)
    if trainer._stage == "student":
        summary = {**summary, "τ (temperature)": args.temperature, "p (power)": args.power, "α (alpha)": args.alpha,
                   "τ_s (student temperature)": args.student_temperature or args.temperature}
    return summary


def run_log(trainer, extra: dict | None = None, status: str = "running", error: str | None = None) -> dict:
    """The full record of ``run_log.json``: the summary, versions, the resolved configuration (tokens redacted by
    ``TrainingArguments.to_dict``) and any ``extra`` settings (e.g. a recipe's data arguments). ``status`` is
    ``running`` while training and in checkpoints, ``complete`` once the final folder is saved, ``failed`` (with the
    ``error``) when training raised."""
    args = trainer.args
    return {
        "stage": trainer._stage,
        "status": status,
        **({"error": error} if error else {}),
        "command": command_line(),
        "launcher": launcher()[0],
        "seed": args.seed,
        "world_size": args.world_size,
        "distributed_type": str(getattr(trainer.accelerator.distributed_type, "value",
                                        trainer.accelerator.distributed_type)),  # what ran: DDP, FSDP, DeepSpeed…
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "effective_train_batch_size": args.per_device_train_batch_size * args.world_size
                                      * args.gradient_accumulation_steps,
        "precision": precision(args),
        "channels_last": args.channels_last,
        "torch_compile": args.torch_compile,
        "versions": dict(package_versions()),
        "git_commit": git_commit(),
        "global_step": trainer.state.global_step,
        "initial_weights": getattr(trainer, "initial_weights", None),
        **({"layer_decay": args.layer_decay, "classifier_lr": args.classifier_lr,
            "optimizer_groups": trainer.optimizer_groups}
           if getattr(args, "layer_decay", None) or getattr(args, "classifier_lr", None) is not None else {}),
        **({"changed_at_resume": trainer.resume_changes} if getattr(trainer, "resume_changes", None) else {}),
        "config": args.to_dict(),
        **(extra or {}),
    }
