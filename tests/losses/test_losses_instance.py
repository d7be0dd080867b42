from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from crossmodal.losses import InstanceLoss


def test_one_classifier_is_shared_by_both_branches():
    torch.manual_seed(0)
    loss = InstanceLoss(dim=4, num_instances=3)
    assert [name for name, _ in loss.named_parameters()] == ["weight"]
    img, txt, ids = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 2])
    grads = []
    for image_weight, text_weight in ((0.0, 1.0), (1.0, 0.0)):
        loss.zero_grad()
        loss.image_weight, loss.text_weight = image_weight, text_weight
        loss(img, txt, ids).backward()
        grads.append(loss.weight.grad.clone())
    assert grads[0].abs().sum() > 0  # text alone reaches the shared classifier
    assert grads[1].abs().sum() > 0  # and so does the image branch alone
    loss.zero_grad()
    loss.image_weight = loss.text_weight = 1.0
    loss(img, txt, ids).backward()
    torch.testing.assert_close(loss.weight.grad, grads[0] + grads[1])


@pytest.mark.parametrize("normalize", [True, False])
def test_matches_manual_cross_entropy(normalize: bool):
    torch.manual_seed(1)
    loss = InstanceLoss(dim=5, num_instances=7, image_weight=0.3, text_weight=0.7,
                        normalize=normalize, scale=10.0)
    img, txt = torch.randn(4, 5), torch.randn(6, 5)
    image_ids, text_ids = torch.tensor([0, 3, 5, 6]), torch.tensor([0, 0, 3, 5, 6, 6])
    w = loss.weight.detach()
    if normalize:
        logits_i = 10.0 * F.normalize(img, dim=1) @ F.normalize(w, dim=1).T
        logits_t = 10.0 * F.normalize(txt, dim=1) @ F.normalize(w, dim=1).T
    else:
        logits_i, logits_t = img @ w.T, txt @ w.T
    expected = (0.3 * F.cross_entropy(logits_i, image_ids)
                + 0.7 * F.cross_entropy(logits_t, text_ids))
    torch.testing.assert_close(loss(img, txt, image_ids, text_ids), expected)


def test_default_is_mean_of_branches_with_paired_ids():
    torch.manual_seed(2)
    loss = InstanceLoss(dim=3, num_instances=4)
    img, txt, ids = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([3, 2, 1, 0])
    expected = 0.5 * (F.cross_entropy(loss.logits(img), ids)
                      + F.cross_entropy(loss.logits(txt), ids))
    torch.testing.assert_close(loss(img, txt, ids), expected)


def _toy(num_instances: int = 4, per_class: int = 3, dim: int = 8):
    # Separable: each instance has its own centre; images and captions are noisy copies.
    torch.manual_seed(3)
    centres = F.normalize(torch.randn(num_instances, dim), dim=1)
    ids = torch.arange(num_instances).repeat_interleave(per_class)
    img = centres[ids] + 0.05 * torch.randn(len(ids), dim)
    txt = centres[ids] + 0.05 * torch.randn(len(ids), dim)
    return centres, ids, img, txt


@pytest.mark.parametrize("normalize", [True, False])
def test_separable_toy_data_drives_loss_down(normalize: bool):
    centres, ids, img, txt = _toy()
    loss = InstanceLoss(dim=8, num_instances=4, normalize=normalize)
    opt = torch.optim.Adam(loss.parameters(), lr=0.1)
    start = loss(img, txt, ids).item()
    for _ in range(30):
        opt.zero_grad()
        value = loss(img, txt, ids)
        value.backward()
        opt.step()
    end = loss(img, txt, ids).item()
    assert end < 0.1 * start and end < 0.1


def test_wrong_labels_cost_more_than_right_labels():
    centres, ids, img, txt = _toy()
    loss = InstanceLoss(dim=8, num_instances=4)
    with torch.no_grad():
        loss.weight.copy_(centres)  # a classifier that has learned the instances
    wrong = (ids + 1) % 4
    assert loss(img, txt, ids) < loss(img, txt, wrong)
    assert loss(img, txt, ids) < loss(img, txt, ids, wrong)


@pytest.mark.parametrize(("ids", "match"), [
    (torch.tensor([0, 1, 4]), r"\[0, num_instances=4\).*max 4"),
    (torch.tensor([0, -1, 2]), r"\[0, num_instances=4\).*min -1"),
    (torch.tensor([0.0, 1.0, 2.0]), "integer"),
    (torch.tensor([0, 1]), "3 entries"),
])
def test_bad_ids_raise_value_error(ids: torch.Tensor, match: str):
    loss = InstanceLoss(dim=2, num_instances=4)
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match=match):
        loss(x, x, ids)
    with pytest.raises(ValueError, match=match):
        loss(x, x, torch.tensor([0, 1, 2]), ids)


def test_wrong_embedding_width_raises():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        InstanceLoss(dim=2, num_instances=4)(torch.randn(3, 5), torch.randn(3, 5),
                                             torch.tensor([0, 1, 2]))
