"""Margin heads and partial FC: the logits they produce and the loss they take."""

import math

import pytest
import torch
import torch.nn.functional as F

from toolkit.training.losses import CombinedMargin, arcface, cosface, distillation_loss, margin_from_config
from toolkit.training.partial_fc import PartialFC


def test_cosface_subtracts_the_margin_from_the_target_cosine_only():
    cosine = torch.tensor([[0.5, 0.2, -0.1]])
    logits = cosface(s=64, m=0.35)(cosine, torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(64 * (0.5 - 0.35))
    assert logits[0, 1:].tolist() == pytest.approx([64 * 0.2, 64 * -0.1])


def test_arcface_adds_the_margin_to_the_target_angle():
    cosine = torch.tensor([[0.6, 0.1]])
    logits = arcface(s=64, m=0.5)(cosine, torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(64 * math.cos(math.acos(0.6) + 0.5), rel=1e-5)
    assert logits[0, 1].item() == pytest.approx(6.4)


def test_combined_margin_applies_all_three_terms():
    cosine = torch.tensor([[0.7, 0.0]])
    logits = CombinedMargin(s=10, m1=1.2, m2=0.1, m3=0.05)(cosine, torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(10 * (math.cos(1.2 * math.acos(0.7) + 0.1) - 0.05), rel=1e-5)


def test_arcface_target_logit_keeps_falling_past_pi():
    angles = torch.linspace(2.5, 3.1, 7)
    logits = arcface(s=1, m=0.5)(torch.cos(angles)[:, None], torch.zeros(7, dtype=torch.long))[:, 0]
    assert torch.all(logits[1:] < logits[:-1])


def test_rows_without_a_target_get_no_margin():
    cosine = torch.tensor([[0.5, 0.4]])
    assert cosface(s=2, m=0.3)(cosine, torch.tensor([-1]))[0].tolist() == pytest.approx([1.0, 0.8])


def test_margins_by_name_follow_the_papers_settings():
    assert margin_from_config("cosface", 64, 1, 0.5, 0.35) == CombinedMargin(64, 1, 0, 0.35)
    assert margin_from_config("arcface", 64, 1, 0.5, 0.35) == CombinedMargin(64, 1, 0.5, 0)
    with pytest.raises(ValueError):
        margin_from_config("sphereface", 64, 1, 0, 0)


def test_full_partial_fc_is_margin_softmax_cross_entropy():
    torch.manual_seed(0)
    head = PartialFC(cosface(s=30, m=0.2), 8, 5, label_smoothing=0.1)
    x, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    cosine = F.linear(F.normalize(x), F.normalize(head.weight)).clamp(-1, 1)
    expected = F.cross_entropy(cosface(30, 0.2)(cosine, labels), labels, label_smoothing=0.1)
    assert head(x, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_partial_fc_scores_every_positive_and_a_sample_of_the_rest():
    head = PartialFC(cosface(), 4, 100, sample_rate=0.1, seed=3)
    labels = torch.tensor([5, 17, 17, 99])
    index, target = head._sample(labels)
    assert len(index) == 10
    assert {5, 17, 99} <= set(index.tolist())
    assert index[target].tolist() == labels.tolist()


def test_partial_fc_gradient_reaches_only_the_sampled_centres():
    head = PartialFC(cosface(), 4, 50, sample_rate=0.2)
    loss = head(torch.randn(3, 4), torch.tensor([1, 2, 3]))
    loss.backward()
    touched = (head.weight.grad.abs().sum(dim=1) > 0).sum().item()
    assert 3 <= touched <= 10


def test_distillation_loss_is_zero_for_the_teachers_direction_and_ignores_its_gradient():
    teacher = torch.randn(4, 8, requires_grad=True)
    student = (3 * teacher).detach().requires_grad_(True)
    assert distillation_loss(student, teacher).item() == pytest.approx(0.0, abs=1e-6)
    distillation_loss(student + torch.randn(4, 8), teacher).backward()
    assert teacher.grad is None


def test_faces_without_a_class_take_no_part_in_the_softmax():
    torch.manual_seed(0)
    head = PartialFC(cosface(s=30, m=0.2), 8, 5)
    x, labels = torch.randn(4, 8, requires_grad=True), torch.tensor([0, -1, 3, -1])
    loss = head(x, labels)
    assert loss.item() == pytest.approx(head(x[[0, 2]], labels[[0, 2]]).item())
    loss.backward()
    assert x.grad[[1, 3]].abs().sum() == 0 and x.grad[[0, 2]].abs().sum() > 0
    assert head(x[[1, 3]], labels[[1, 3]]).item() == 0.0
