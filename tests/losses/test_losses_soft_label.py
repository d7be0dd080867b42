from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from crossmodal.losses import (
    CSA_WEIGHT,
    USA_WEIGHT,
    CSALoss,
    CUSALoss,
    USALoss,
    teacher_similarity,
)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def _manual_kl(student: torch.Tensor, tau: float, teacher: torch.Tensor, teacher_tau: float,
               mask_diagonal: bool = False) -> torch.Tensor:
    if mask_diagonal:  # the variant the authors do NOT use, to tell the two apart
        eye = torch.eye(len(student), dtype=torch.bool)
        student, teacher = student.masked_fill(eye, -1e4), teacher.masked_fill(eye, -1e4)
    log_p = F.log_softmax(student / tau, dim=1)
    q = F.softmax(teacher / teacher_tau, dim=1)
    return F.kl_div(log_p, q, reduction="none").sum(1).mean()


def _batch(b: int = 6, d: int = 5, seed: int = 0):
    torch.manual_seed(seed)
    img, txt = torch.randn(b, d), torch.randn(b, d)
    return img, txt, teacher_similarity(torch.randn(b, 7)), teacher_similarity(torch.randn(b, 9))


def test_defaults_follow_the_authors_config():
    csa, usa = CSALoss(), USALoss()
    assert math.isclose(1 / csa.tau().item(), 0.45, rel_tol=1e-6)
    assert (csa.tau.min_tau, csa.tau.max_tau) == (0.10, 0.99)
    assert (usa.image_tau.min_tau, usa.image_tau.max_tau) == (0.10, 1.00)
    assert math.isclose(1 / usa.text_tau().item(), 0.45, rel_tol=1e-6)
    assert csa.teacher_tau().item() == 1.0 and usa.teacher_tau().item() == 1.0
    # learnable student taus (USA: one per modality); teacher tau is a buffer, not trained
    assert [n for n, _ in csa.named_parameters()] == ["tau.log_scale"]
    assert [n for n, _ in usa.named_parameters()] == ["image_tau.log_scale",
                                                      "text_tau.log_scale"]
    combo = CUSALoss()
    assert (combo.csa_weight, combo.usa_weight) == (CSA_WEIGHT, USA_WEIGHT) == (0.1, 0.5)


def test_temperature_is_clamped():
    assert math.isclose(1 / CSALoss(tau=0.01).tau().item(), 0.10, rel_tol=1e-6)
    assert math.isclose(1 / USALoss(tau=5.0).image_tau().item(), 1.00, rel_tol=1e-6)
    # forward's clamp has no gradient past the bound; clamp_() puts the value back on it
    csa = CSALoss(tau=5.0)
    img, txt, t_img, t_txt = _batch()
    csa(img, txt, t_img, t_txt).backward()
    assert csa.tau.log_scale.grad == 0
    csa.tau.clamp_()
    assert math.isclose(math.exp(-csa.tau.log_scale.item()), 0.99, rel_tol=1e-6)


@pytest.mark.parametrize("cls", [CSALoss, USALoss])
def test_non_negative(cls):
    for seed in range(3):
        assert cls()(*_batch(seed=seed)).item() >= 0.0


def test_zero_when_student_equals_teacher():
    img, txt, _, _ = _batch()
    s = _cos(img, txt)
    # teacher/1.0 == student/0.45 row by row -> identical distributions -> KL 0
    assert abs(CSALoss()(img, txt, s / 0.45, s.T / 0.45).item()) < 1e-6
    assert abs(USALoss()(img, txt, _cos(img, img) / 0.45, _cos(txt, txt) / 0.45).item()) < 1e-6
    assert CSALoss()(img, txt, s, s.T).item() > 1e-3  # and not otherwise


def test_csa_matches_manual_kl_div_with_diagonal_kept():
    img, txt, t_img, t_txt = _batch(seed=1)
    s = _cos(img, txt)
    expected = 0.5 * (_manual_kl(s, 0.45, t_img, 1.0) + _manual_kl(s.T, 0.45, t_txt, 1.0))
    got = CSALoss()(img, txt, t_img, t_txt)
    torch.testing.assert_close(got, expected)
    masked = 0.5 * (_manual_kl(s, 0.45, t_img, 1.0, True)
                    + _manual_kl(s.T, 0.45, t_txt, 1.0, True))
    assert abs(got - masked) > 1e-3  # the diagonal really is part of each row


def test_usa_matches_manual_kl_div_with_diagonal_kept():
    img, txt, t_img, t_txt = _batch(seed=2)
    usa = USALoss(tau=0.3)
    expected = 0.5 * (_manual_kl(_cos(img, img), 0.3, t_img, 1.0)
                      + _manual_kl(_cos(txt, txt), 0.3, t_txt, 1.0))
    got = usa(img, txt, t_img, t_txt)
    torch.testing.assert_close(got, expected)
    masked = 0.5 * (_manual_kl(_cos(img, img), 0.3, t_img, 1.0, True)
                    + _manual_kl(_cos(txt, txt), 0.3, t_txt, 1.0, True))
    assert abs(got - masked) > 1e-3


@pytest.mark.parametrize("cls", [CSALoss, USALoss])
def test_gradients_reach_student_and_tau_but_not_teacher(cls):
    img, txt, t_img, t_txt = _batch(seed=3)
    img.requires_grad_(True)
    txt.requires_grad_(True)
    t_img.requires_grad_(True)
    t_txt.requires_grad_(True)
    loss = cls()
    loss(img, txt, t_img, t_txt).backward()
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs() > 0 for p in loss.parameters())
    assert t_img.grad is None and t_txt.grad is None
    assert not loss.teacher_tau.log_scale.requires_grad


@pytest.mark.parametrize("cls", [CSALoss, USALoss])
def test_toy_optimisation_reduces_loss(cls):
    img, txt, t_img, t_txt = _batch(b=8, seed=4)
    img, txt = torch.nn.Parameter(img), torch.nn.Parameter(txt)
    loss = cls()
    opt = torch.optim.Adam([img, txt, *loss.parameters()], lr=0.05)
    start = loss(img, txt, t_img, t_txt).item()
    for _ in range(40):
        opt.zero_grad()
        loss(img, txt, t_img, t_txt).backward()
        opt.step()
    assert loss(img, txt, t_img, t_txt).item() < 0.5 * start


def test_cusa_is_weighted_sum():
    img, txt, t_img, t_txt = _batch(seed=5)
    u_img, u_txt = torch.randn(6, 5), torch.randn(6, 5)
    combo = CUSALoss()
    expected = (0.1 * combo.csa(img, txt, t_img, t_txt)
                + 0.5 * combo.usa(u_img, u_txt, t_img, t_txt))
    torch.testing.assert_close(combo(img, txt, u_img, u_txt, t_img, t_txt), expected)


def test_teacher_similarity_is_cosine_without_grad():
    feats = torch.randn(4, 3, requires_grad=True)
    sim = teacher_similarity(feats)
    torch.testing.assert_close(sim, _cos(feats, feats).detach())
    assert not sim.requires_grad


def test_teacher_shape_mismatch_raises():
    img, txt, t_img, t_txt = _batch()
    with pytest.raises(ValueError, match="must match"):
        CSALoss()(img, txt, t_img[:5, :5], t_txt)
    with pytest.raises(ValueError, match="must match"):
        USALoss()(img, txt[:4], t_img, t_txt)
