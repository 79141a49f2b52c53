"""Trainers for the two DiVE stages: ``BalancedSoftmaxTrainer`` (teacher), ``DiVETrainer`` (student), and the
``CrossEntropyTrainer`` baseline.

They are ``transformers.Trainer`` subclasses over plain timm models: the Trainer supplies the loop, Accelerate
(multi-GPU, mixed precision), checkpoints, resumption and progress bars. The classes keep only their hooks (the
long-tailed losses, the schedules, the timm layout of every save, the capture of evaluations); every other job has
its module:

    base.py           BalancedSoftmaxTrainer, CrossEntropyTrainer
    dive.py           DiVETrainer, and the placement of its frozen teacher
    arguments.py      checks of what a trainer is given; class counts and names; the model from a name
    loaders.py        data loaders: DeviceImages batched on the device, seeded augmentation
    callbacks.py      EpochToAugmentation (GracefulStop, the preemption callback, is dive_hf.preemption's)
    optim.py          fused optimizers; warmup_epochs and the multistep schedule
    resume_checks.py  the settings and teacher a checkpoint records, compared when resuming
    run.py            the run log's status, a diverged or preempted run stopping, the final evaluation
    outputs.py        the stage folder: the dive block, timm's files, the evaluation report, the card, the push
    predict.py        a trainer without a training set, for evaluate/predict (``for_checkpoint``, ``dive-hf evaluate``)

Private ``transformers.Trainer`` methods still overridden, each the only hook for its job:

    _save                  Every save, checkpoints included, must write timm's layout (``model.safetensors`` with
                           timm's keys and ``config.json`` with the ``dive`` block) instead of transformers'; it is
                           also where ``save_model`` hands over the state dict it gathered under DeepSpeed or FSDP.

No longer overridden: ``_push_from_checkpoint`` — the configs hold ``hub_strategy="end"`` (any other value is a
``ValueError``), so transformers itself never pushes an intermediate checkpoint: the Hub repo only ever holds a
complete, evaluated stage folder. ``_save_checkpoint`` — "never write a checkpoint of a diverged model" is checked in
the public ``save_model`` when the Trainer calls it with ``_internal_call=True`` (the first step of its checkpoint
save, on every process), and at every log and at the end of training.
"""
from .base import BalancedSoftmaxTrainer, CrossEntropyTrainer
from .dive import DiVETrainer, deepspeed_teacher_dtype
from .optim import fused_optimizer_kwargs

__all__ = ["BalancedSoftmaxTrainer", "CrossEntropyTrainer", "DiVETrainer", "deepspeed_teacher_dtype",
           "fused_optimizer_kwargs"]
