from __future__ import annotations

import math

import torch

from crossmodal.losses.infonce import InfoNCELoss


def test_aligned_pairs_score_lower_than_shuffled():
    torch.manual_seed(0)
    x = torch.randn(16, 8)
    loss = InfoNCELoss(tau=0.05)
    assert loss(x, x) < loss(x, x[torch.randperm(16)])


def test_matches_manual_cross_entropy():
    torch.manual_seed(1)
    img, txt = torch.randn(5, 4), torch.randn(5, 4)
    loss = InfoNCELoss(tau=0.1, learnable=False)
    logits = 10 * torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(
        txt, dim=-1).T
    target = torch.arange(5)
    expected = 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                      + torch.nn.functional.cross_entropy(logits.T, target))
    torch.testing.assert_close(loss(img, txt), expected)


def test_multi_positive_ids_equal_plain_loss_when_ids_unique():
    torch.manual_seed(2)
    img, txt = torch.randn(6, 4), torch.randn(6, 4)
    loss = InfoNCELoss(tau=0.1)
    torch.testing.assert_close(loss(img, txt, torch.arange(6)), loss(img, txt))


def test_duplicate_captions_are_not_negatives():
    # Rows 0 and 1 are the same image. With ids, matching both equally is optimal: the loss
    # equals the entropy of the soft target (KL 0). Without ids, one-hot targets turn the
    # duplicate into a negative and leave a KL of log 2 on those rows that no model can remove.
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss = InfoNCELoss(tau=0.01, learnable=False)
    target_entropy = 2 * math.log(2) / 3
    assert abs(loss(img, img, torch.tensor([7, 7, 3])).item() - target_entropy) < 1e-4
    assert abs(loss(img, img).item() - 2 * math.log(2) / 3) < 1e-4  # KL log 2 vs one-hot


def test_multi_positive_matches_soft_label_cross_entropy():
    torch.manual_seed(3)
    img, txt = torch.randn(6, 4), torch.randn(6, 4)
    ids = torch.tensor([0, 0, 1, 2, 2, 2])
    loss = InfoNCELoss(tau=0.2, learnable=False)
    logits = 5 * torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(
        txt, dim=-1).T
    target = (ids[:, None] == ids[None, :]).float()
    target = target / target.sum(1, keepdim=True)
    expected = 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                      + torch.nn.functional.cross_entropy(logits.T, target))
    torch.testing.assert_close(loss(img, txt, ids), expected)


def test_temperature_is_clamped_and_learnable():
    loss = InfoNCELoss(tau=0.001, min_tau=0.01)
    assert math.isclose(loss.scale.item(), 100.0, rel_tol=1e-5)
    x = torch.randn(4, 3, requires_grad=True)
    loss(x, x.detach() + 0.1).backward()
    assert InfoNCELoss(tau=0.07).log_scale.requires_grad
