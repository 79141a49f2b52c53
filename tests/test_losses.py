"""dive_hf.losses against closed forms and a float64 reference."""
import math

import pytest
import torch
import torch.nn.functional as F

from dive_hf.losses import (balanced_softmax_cross_entropy, dive_loss, dive_loss_terms, log_prior,
                            virtual_targets)

COUNTS = [500, 200, 80, 20, 5]


def _data(n=8, c=5, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=g, dtype=torch.float64) * scale,
            torch.randn(n, c, generator=g, dtype=torch.float64) * scale,
            torch.randint(0, c, (n,), generator=g))


def _reference_bsce(z, y, counts):
    """-log( n_y e^{z_y} / Σ_j n_j e^{z_j} ), the Balanced Softmax likelihood, in float64 by hand."""
    n = torch.tensor(counts, dtype=torch.float64)
    weighted = n * torch.exp(z - z.max(1, keepdim=True).values)
    return -(torch.log(weighted[torch.arange(len(y)), y] / weighted.sum(1))).mean()


def _reference_kl(v, s, tau):
    q = torch.softmax(s / tau, 1)
    return (v * (v.log() - q.log())).sum(1).mean()


def test_bsce_matches_closed_form():
    z, _, y = _data()
    got = balanced_softmax_cross_entropy(z, y, COUNTS)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(_reference_bsce(z, y, COUNTS).item(), rel=1e-5)


def test_bsce_with_uniform_counts_is_cross_entropy():
    z, _, y = _data()
    assert balanced_softmax_cross_entropy(z, y, [7] * 5).item() == pytest.approx(
        F.cross_entropy(z, y).item(), rel=1e-5)


def test_bsce_reductions_and_tensor_counts():
    z, _, y = _data()
    per = balanced_softmax_cross_entropy(z, y, torch.tensor(COUNTS), reduction="none")
    assert per.shape == (8,)
    assert balanced_softmax_cross_entropy(z, y, COUNTS, reduction="sum").item() == pytest.approx(per.sum().item(),
                                                                                                 rel=1e-5)


def test_virtual_targets_equal_power_normalised_softmax():
    _, t, _ = _data()
    tau, p = 3.0, 0.5
    v = virtual_targets(t, tau, p)
    assert v.dtype == torch.float32 and not v.requires_grad
    by_definition = torch.softmax(t / tau, 1) ** p
    by_definition = by_definition / by_definition.sum(1, keepdim=True)
    torch.testing.assert_close(v.double(), by_definition, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(v.double(), torch.softmax(p * t / tau, 1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(v.sum(1), torch.ones(8))


def test_virtual_targets_are_flatter_than_teacher_softmax():
    _, t, _ = _data()
    v = virtual_targets(t, 3.0, 0.5)
    plain = torch.softmax(t.float() / 3.0, 1)
    entropy = lambda p: -(p * p.log()).sum(1)  # noqa: E731
    assert (entropy(v) > entropy(plain)).all()


def test_dive_loss_matches_float64_reference():
    s, t, y = _data()
    tau, p, alpha = 3.0, 0.5, 0.5
    v = torch.softmax(p * t / tau, 1)
    expected = (1 - alpha) * _reference_bsce(s, y, COUNTS) + alpha * tau ** 2 * _reference_kl(v, s, tau)
    got = dive_loss(s, t, y, COUNTS, tau, p, alpha)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("tau, p, tau_s", [(3.0, 0.5, 6.0), (2.0, 0.5, 1.0), (6.0, 1.0, 12.0)])
def test_student_temperature_matches_float64_reference(tau, p, tau_s):
    s, t, y = _data(seed=3)
    alpha = 0.5
    v = torch.softmax(p * t / tau, 1)  # the targets keep the teacher's τ; only the student's softmax moves
    expected = (1 - alpha) * _reference_bsce(s, y, COUNTS) + alpha * tau_s ** 2 * _reference_kl(v, s, tau_s)
    got = dive_loss(s, t, y, COUNTS, tau, p, alpha, student_temperature=tau_s)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    # and it is a different loss from the paper's (τ_s = τ), which the default still gives
    paper = (1 - alpha) * _reference_bsce(s, y, COUNTS) + alpha * tau ** 2 * _reference_kl(v, s, tau)
    assert abs(got.item() - paper.item()) > 1e-3
    assert dive_loss(s, t, y, COUNTS, tau, p, alpha).item() == pytest.approx(paper.item(), rel=1e-5)
    assert dive_loss(s, t, y, COUNTS, tau, p, alpha, student_temperature=tau).item() == pytest.approx(
        paper.item(), rel=1e-5)


def test_alpha_zero_is_balanced_softmax():
    s, t, y = _data()
    assert dive_loss(s, t, y, COUNTS, alpha=0.0).item() == pytest.approx(
        balanced_softmax_cross_entropy(s, y, COUNTS).item(), rel=1e-6)


def test_power_one_is_ordinary_knowledge_distillation():
    s, t, y = _data()
    tau = 4.0
    kd = tau ** 2 * _reference_kl(torch.softmax(t / tau, 1), s, tau)  # Hinton et al.'s soft-target term
    assert dive_loss(s, t, y, COUNTS, temperature=tau, power=1.0, alpha=1.0).item() == pytest.approx(kd.item(),
                                                                                                    rel=1e-5)


def test_identical_logits_with_power_one_have_no_distillation_loss():
    s, _, y = _data()
    terms = dive_loss_terms(s, s.clone(), y, COUNTS, temperature=2.0, power=1.0, alpha=0.5)
    assert terms.distill.item() == pytest.approx(0.0, abs=1e-6)
    assert terms.loss.item() == pytest.approx(0.5 * terms.hard.item(), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_are_computed_in_float32(dtype):
    s, t, y = _data(scale=5.0)
    s16, t16 = s.to(dtype), t.to(dtype)
    got = dive_loss(s16, t16, y, COUNTS)
    reference = dive_loss(s16.double(), t16.double(), y, COUNTS)  # same rounded inputs, full precision
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(reference.item(), rel=1e-5)
    assert virtual_targets(t16).dtype == torch.float32


def test_stable_for_logits_of_magnitude_1e4():
    s, t, y = _data(scale=1e4)
    s.requires_grad_(True)
    loss = dive_loss(s, t, y, COUNTS)
    loss.backward()
    assert math.isfinite(loss.item())
    assert torch.isfinite(s.grad).all()
    assert torch.isfinite(virtual_targets(t * 1e4)).all()


def test_gradients_reach_the_student_only():
    s, t, y = _data()
    s = s.float().requires_grad_(True)
    t = t.float().requires_grad_(True)
    dive_loss(s, t, y, COUNTS).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize("counts, match", [
    ([500, 200, 0, 20, 5], r"class_counts\[2\] = 0"),
    ([500, -3, 80, 20, 5], r"class_counts\[1\] = -3"),
    ([500, 200, 80, 20], r"4 entries but the logits have 5"),
])
def test_invalid_class_counts_name_the_class(counts, match):
    s, t, y = _data()
    with pytest.raises(ValueError, match=match):
        dive_loss(s, t, y, counts)
    with pytest.raises(ValueError, match=match):
        balanced_softmax_cross_entropy(s, y, counts)


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=0.0), "temperature"), (dict(power=-1.0), "power"), (dict(alpha=1.5), "alpha"),
    (dict(student_temperature=0.0), "student_temperature"),
])
def test_invalid_hyper_parameters(kwargs, match):
    s, t, y = _data()
    with pytest.raises(ValueError, match=match):
        dive_loss(s, t, y, COUNTS, **kwargs)


def test_log_prior_is_float32_log_counts():
    prior = log_prior(COUNTS)
    assert prior.dtype == torch.float32
    torch.testing.assert_close(prior, torch.tensor(COUNTS, dtype=torch.float32).log())
