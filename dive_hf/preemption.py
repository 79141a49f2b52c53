"""Preemption: on SIGTERM (cloud / SLURM stop) or Ctrl-C, finish the current step, save a checkpoint, stop.

Schedulers send SIGTERM and, after a grace period (typically 30 s or more), SIGKILL. :class:`GracefulStop` only sets a
flag in the signal handler; at the end of the next optimizer step it asks the Trainer to save a complete checkpoint
and stop. The trainer then marks ``run_log.json`` ``interrupted`` and raises :class:`TrainingInterrupted`, so the
launch exits non-zero and ``--resume_from_checkpoint last`` continues bit-identically.

With several processes the decision must be the same on every rank (one rank leaving the loop alone would hang the
others in their next all-reduce): the flag is combined across processes every ``sync_every`` steps (a one-element
all-reduce — not every step, to keep training free of per-step host synchronisation). A second Ctrl-C stops at
once; repeated SIGTERMs are absorbed (SLURM signals every process and torchrun forwards its own). Handlers are
installed only while training runs.

Outside the training loop (the virtual-example pass, the final evaluation) there is no step to finish: inside
:func:`stop_on_signal` a signal stops the work at once, the caller records the run log ``interrupted``, and the same
:class:`TrainingInterrupted` ends the launch (exit code 143, output lock released).
"""
from __future__ import annotations

import contextlib
import signal
import threading

from transformers import TrainerCallback

__all__ = ["GracefulStop", "TrainingInterrupted", "stop_on_signal"]


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a complete checkpoint."""

    exit_code = 143  # 128 + SIGTERM, what a scheduler expects from a job stopped by SIGTERM


class GracefulStop(TrainerCallback):
    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT), sync_every: int = 10):
        self.signals = signals
        self.sync_every = sync_every
        self.received: int | None = None  # the signal number, once one arrived
        self.stopped_at: int | None = None  # the global step at which training stopped for it
        self._previous: dict = {}

    def _handle(self, signum, frame):
        self.received = signum
        if signum == signal.SIGINT:  # a second Ctrl-C acts at once; repeated SIGTERMs (SLURM signals every process,
            # and torchrun forwards its own) must not kill the run before its checkpoint
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def on_train_begin(self, args, state, control, **kwargs):
        self.received, self.stopped_at = None, None
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)

    def on_train_end(self, args, state, control, **kwargs):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def on_step_end(self, args, state, control, **kwargs):
        if args.world_size > 1:
            if state.global_step % self.sync_every:
                return control
            requested = _any_process(self.received is not None)
        else:
            requested = self.received is not None
        if requested:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.received).name if self.received else "a signal on another process"


class _Stopped(BaseException):
    """Raised by :func:`stop_on_signal`'s handler; a ``BaseException`` (as ``KeyboardInterrupt``), so that no
    ``except Exception`` on the way (e.g. one that records an evaluation as failed) takes it for an error."""


@contextlib.contextmanager
def stop_on_signal(what: str, on_stop=None, signals=(signal.SIGTERM, signal.SIGINT)):
    """Stop the block at once on SIGTERM / SIGINT: ``on_stop(message)`` (e.g. mark the run log ``interrupted``),
    then :class:`TrainingInterrupted` ("stopped by SIGTERM during {what}"). Repeated signals are absorbed; only in the
    main thread (elsewhere the block runs unguarded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handle(signum, frame):
        if not received:  # the first one stops; SLURM and torchrun may send more
            received.append(signum)
            raise _Stopped()

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield
    except _Stopped:
        message = f"stopped by {signal.Signals(received[0]).name} during {what}"
        if on_stop is not None:
            on_stop(message)
        raise TrainingInterrupted(message) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _any_process(flag: bool) -> bool:
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1 if flag else 0], device=PartialState().device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
