"""DiVE's losses as pure functions (He, Wu & Wei, "Distilling Virtual Examples for Long-tailed Recognition", ICCV 2021).

Notation: ``z`` student logits, ``t`` teacher logits, ``n`` training images per class, ``τ`` temperature, ``p`` power,
``α`` distillation weight. All maths runs in float32 (log-space where it matters) even when logits arrive in
bf16/fp16 under autocast.

- Balanced Softmax CE (Ren et al., NeurIPS 2020): ``CE(z + log n, y)``; inference uses the raw ``z``.
- Virtual targets: ``v = normalise(softmax(t/τ) ** p) = softmax(p · t / τ)`` (the identity is exact).
- DiVE: ``L = (1 − α) · BSCE(z, y) + α · τ_s² · KL(v ‖ softmax(z/τ_s))``, KL averaged over the batch, where the
  student's temperature ``τ_s`` defaults to ``τ`` (the paper's loss). ``τ_s`` is its own knob because the paper ties
  two different things to one τ: with power normalisation the *targets* ``softmax(p·t/τ)`` are at the effective
  temperature ``τ/p`` (6 at τ = 3, p = 0.5) while the student's softmax stays at ``τ``; a third-party reproduction
  found tail accuracy moves with the student's side.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "balanced_softmax_cross_entropy", "balanced_softmax_cross_entropy_from_prior", "virtual_targets",
    "log_virtual_targets", "dive_loss", "dive_loss_terms", "DiVELossTerms", "dive_loss_terms_from_prior", "log_prior",
]


def log_prior(class_counts: Sequence[int] | torch.Tensor, num_classes: int | None = None,
              device: torch.device | None = None) -> torch.Tensor:
    """``log n`` as a float32 ``[C]`` tensor, after checking every count is positive and the length is ``C``."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64).detach().flatten()
    if num_classes is not None and counts.numel() != num_classes:
        raise ValueError(f"class_counts has {counts.numel()} entries but the logits have {num_classes} classes")
    bad = torch.nonzero(~(counts > 0)).flatten()  # also catches NaN
    if bad.numel():
        i = int(bad[0])
        raise ValueError(
            f"class_counts[{i}] = {counts[i].item():g}: every class needs at least one training image "
            f"({bad.numel()} class(es) do not); drop empty classes or fix the split"
        )
    return counts.log().to(device=device, dtype=torch.float32)


def balanced_softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                                   class_counts: Sequence[int] | torch.Tensor, reduction: str = "mean"
                                   ) -> torch.Tensor:
    """Balanced Softmax cross-entropy ``CE(z + log n, y)``.

    Args:
        logits: ``[N, C]`` raw logits ``z`` (any float dtype; computed in float32).
        labels: ``[N]`` class indices.
        class_counts: ``[C]`` training images per class ``n`` (all > 0).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    prior = log_prior(class_counts, logits.shape[-1], logits.device)
    return balanced_softmax_cross_entropy_from_prior(logits, labels, prior, reduction)


def balanced_softmax_cross_entropy_from_prior(logits: torch.Tensor, labels: torch.Tensor, prior: torch.Tensor,
                                              reduction: str = "mean") -> torch.Tensor:
    """:func:`balanced_softmax_cross_entropy` with a precomputed, already validated ``log n`` (``[C]`` float32 on
    the logits' device): the trainers' per-step path, free of host synchronisation."""
    return F.cross_entropy(logits.float() + prior, labels, reduction=reduction)


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def log_virtual_targets(teacher_logits: torch.Tensor, temperature: float = 3.0, power: float = 0.5) -> torch.Tensor:
    """``log v = log_softmax(p · t / τ)`` in float32, without gradient. ``[N, C]``."""
    _check_positive("temperature", temperature)
    _check_positive("power", power)
    with torch.no_grad():
        return F.log_softmax(teacher_logits.detach().float() * (power / temperature), dim=-1)


def virtual_targets(teacher_logits: torch.Tensor, temperature: float = 3.0, power: float = 0.5) -> torch.Tensor:
    """DiVE's virtual targets ``v = normalise(softmax(t/τ) ** p) = softmax(p · t / τ)``.

    Args:
        teacher_logits: ``[N, C]`` teacher logits ``t``.
        temperature: τ > 0 (paper: 3 on CIFAR).
        power: p > 0 (paper: 0.5); p = 1 is ordinary knowledge distillation.

    Returns:
        ``[N, C]`` float32 probabilities (rows sum to 1), detached.
    """
    return log_virtual_targets(teacher_logits, temperature, power).exp()


class DiVELossTerms(NamedTuple):
    """The DiVE loss and its two parts (before weighting): ``loss = (1−α)·hard + α·τ_s²·distill``."""

    loss: torch.Tensor
    hard: torch.Tensor
    distill: torch.Tensor


def _student_temperature(temperature: float, student_temperature: float | None) -> float:
    tau_s = temperature if student_temperature is None else student_temperature
    _check_positive("student_temperature", tau_s)
    return tau_s


def dive_loss_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                    class_counts: Sequence[int] | torch.Tensor, temperature: float = 3.0, power: float = 0.5,
                    alpha: float = 0.5, student_temperature: float | None = None) -> DiVELossTerms:
    """:func:`dive_loss` with its hard-label (BSCE) and distillation (KL, unscaled) parts, for logging."""
    prior = log_prior(class_counts, student_logits.shape[-1], student_logits.device)
    return dive_loss_terms_from_prior(student_logits, teacher_logits, labels, prior, temperature, power, alpha,
                                      student_temperature)


def dive_loss_terms_from_prior(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                               prior: torch.Tensor, temperature: float, power: float, alpha: float,
                               student_temperature: float | None = None) -> DiVELossTerms:
    """:func:`dive_loss_terms` with a precomputed, already validated ``log n`` (``[C]`` float32 on the logits'
    device): the trainers' per-step path, free of host synchronisation."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    tau_s = _student_temperature(temperature, student_temperature)
    hard = balanced_softmax_cross_entropy_from_prior(student_logits, labels, prior)
    log_v = log_virtual_targets(teacher_logits, temperature, power)
    log_q = F.log_softmax(student_logits.float() / tau_s, dim=-1)
    distill = F.kl_div(log_q, log_v, reduction="batchmean", log_target=True)
    # τ_s², not τ²: the KL's gradient w.r.t. the student's logits carries 1/τ_s (Hinton et al.'s reason for the
    # factor), so the distillation term keeps its weight against the hard-label term whatever τ_s is.
    loss = (1.0 - alpha) * hard + alpha * tau_s ** 2 * distill
    return DiVELossTerms(loss, hard, distill)


def dive_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
              class_counts: Sequence[int] | torch.Tensor, temperature: float = 3.0, power: float = 0.5,
              alpha: float = 0.5, student_temperature: float | None = None) -> torch.Tensor:
    """DiVE's student loss ``(1 − α) · BSCE(z, y) + α · τ_s² · KL(v ‖ softmax(z/τ_s))``, ``v = softmax(p·t/τ)``.

    Args:
        student_logits: ``[N, C]`` student logits ``z`` (gradients flow here only).
        teacher_logits: ``[N, C]`` frozen teacher logits ``t`` (detached internally).
        labels: ``[N]`` class indices.
        class_counts: ``[C]`` training images per class.
        temperature: τ, the teacher's temperature in the virtual targets; power: p (1 = no power normalisation);
        alpha: α ∈ [0, 1] (α = 0 is plain BSCE).
        student_temperature: τ_s, the student's softmax temperature; ``None`` (default) means τ, the paper's loss.

    Returns:
        A float32 scalar.
    """
    return dive_loss_terms(student_logits, teacher_logits, labels, class_counts, temperature, power, alpha,
                           student_temperature).loss
