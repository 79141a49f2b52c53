"""Runs the quickstart recipe with a fault injected — for tests/test_faults.py only.

    python tests/fault_runner.py [recipe flags]            with one of these in the environment:
    FAULT_KILL_AT_STEP=teacher:5      SIGKILL the process right after optimizer step 5 of the teacher stage
    FAULT_KILL_IN_RENAME=checkpoint-4/model.safetensors
                                      SIGKILL inside an atomic write of that file: the temporary file is complete,
                                      the rename has not happened
    FAULT_KILL_IN_STATE=checkpoint-4  SIGKILL half-way through writing that checkpoint's trainer_state.json
    FAULT_FILE_SIZE_LIMIT=200000      files may not grow past this many bytes (EFBIG, like a full disk)
    FAULT_SIGNAL_AT_STEP=teacher:4:TERM
                                      send the process SIGTERM (or INT) right after optimizer step 4 of the teacher
                                      stage, as a scheduler preempting the job would
"""
import os
import resource
import signal
import sys

from transformers import TrainerCallback, TrainerState

import dive_hf.trainer
from dive_hf.quickstart import main


def _die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep(TrainerCallback):
    def __init__(self, step: int, signum: int = signal.SIGKILL):
        self.step, self.signum = step, signum

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            if self.signum == signal.SIGKILL:
                _die()
            os.kill(os.getpid(), self.signum)


def _at_step(stage: str, callback: TrainerCallback) -> None:
    original_init = dive_hf.trainer.BalancedSoftmaxTrainer.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self._stage == stage:
            self.add_callback(callback)

    dive_hf.trainer.BalancedSoftmaxTrainer.__init__ = init


if "FAULT_KILL_AT_STEP" in os.environ:
    stage, step = os.environ["FAULT_KILL_AT_STEP"].split(":")
    _at_step(stage, KillAtStep(int(step)))

if "FAULT_SIGNAL_AT_STEP" in os.environ:
    stage, step, name = os.environ["FAULT_SIGNAL_AT_STEP"].split(":")
    _at_step(stage, KillAtStep(int(step), getattr(signal, f"SIG{name}")))

if "FAULT_KILL_IN_RENAME" in os.environ:
    target, real_replace = os.environ["FAULT_KILL_IN_RENAME"], os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(target):
            _die()
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace

if "FAULT_KILL_IN_STATE" in os.environ:
    target, real_save = os.environ["FAULT_KILL_IN_STATE"], TrainerState.save_to_json

    def save_to_json(self, json_path):
        if target in str(json_path):
            real_save(self, json_path)
            with open(json_path, "rb") as f:
                data = f.read()
            with open(json_path, "wb") as f:
                f.write(data[: len(data) // 2])
            _die()
        return real_save(self, json_path)

    TrainerState.save_to_json = save_to_json

if "FAULT_FILE_SIZE_LIMIT" in os.environ:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    limit = int(os.environ["FAULT_FILE_SIZE_LIMIT"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="fault_runner.py"))
