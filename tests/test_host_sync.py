"""No host synchronisation per training step: between two logs, neither trainer reads a tensor's value on the host.

A GPU step that is launch-bound (CIFAR scale) loses its overlap of host and device work if every step waits for the
device. On a CPU there is no device to wait for, so the test counts the Python-level reads that would wait on a GPU
(``item``, ``bool``, ``float``, ``int``, ``index``, ``format``, ``tolist``, ``cpu``, ``numpy`` of a tensor) over 2 and
over 6 steps of one epoch, with no log, evaluation or save in between: the counts must be equal. (Reads inside C++
ops, such as boolean-mask indexing, are not seen here; the DiVE step has none.)
"""
import collections
import traceback

import pytest
import torch

from conftest import stage_kwargs
from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer, DiVEConfig, DiVETrainer
from dive_hf.data import DeviceImages

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
HOST_READS = ("item", "__bool__", "__float__", "__int__", "__index__", "__format__", "tolist", "cpu", "numpy")


@pytest.fixture
def host_reads(monkeypatch):
    """Counts host reads of tensor values by caller (file:line)."""
    counts = collections.Counter()

    def counting(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            caller = traceback.extract_stack(limit=2)[0]
            counts[f"{caller.filename.split('site-packages/')[-1]}:{caller.lineno} ({name})"] += 1
            return original(self, *args, **kwargs)
        return read

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    return counts


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_no_host_read_per_training_step(stage, host_reads, tiny_splits, two_stage_run, tmp_path):
    raw, _, _ = tiny_splits  # 400 images, batch 16: 25 steps in an epoch
    config, trainer_cls = (BalancedSoftmaxConfig, BalancedSoftmaxTrainer) if stage == "teacher" else (
        DiVEConfig, DiVETrainer)
    extra = {} if stage == "teacher" else {"teacher_model_name_or_path": str(two_stage_run["root"] / "teacher")}
    reads = {}
    for steps in (2, 6):
        args = config(**stage_kwargs(tmp_path / f"{steps}", max_steps=steps, logging_steps=1000, **extra))
        trainer = trainer_cls(model="resnet20_cifar", args=args, train_dataset=DeviceImages(raw, MEAN, STD))
        host_reads.clear()
        trainer.train()
        reads[steps] = dict(host_reads)
        assert trainer.state.global_step == steps
    per_step = {k: (reads[2].get(k, 0), reads[6].get(k, 0)) for k in set(reads[2]) | set(reads[6])
                if reads[2].get(k, 0) != reads[6].get(k, 0)}
    assert per_step == {}, f"host reads that grow with the number of steps (2 steps, 6 steps): {per_step}"
    assert sum(reads[6].values()) > 0  # the counter sees the reads at the end of training (the final loss)


def test_the_counter_sees_a_read_per_step(host_reads, tiny_splits, tmp_path):
    """The negative control: a callback that reads a weight sum every step is counted once per step."""
    from transformers import TrainerCallback

    raw, _, _ = tiny_splits

    class ReadEveryStep(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            next(model.parameters()).sum().item()

    counts = []
    for steps in (2, 6):
        args = BalancedSoftmaxConfig(**stage_kwargs(tmp_path / f"{steps}", max_steps=steps, logging_steps=1000))
        trainer = BalancedSoftmaxTrainer(model="resnet20_cifar", args=args, train_dataset=DeviceImages(raw, MEAN, STD),
                                         callbacks=[ReadEveryStep()])
        host_reads.clear()
        trainer.train()
        counts.append(sum(host_reads.values()))
    assert counts[1] - counts[0] == 4
