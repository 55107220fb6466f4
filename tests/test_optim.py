"""Optimizer param groups per layer group, the lr schedule, and the L2-SP penalty."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xferlab.freezing import LayerGroup
from xferlab.heads import TransferModel
from xferlab.optim import L2SP, SCHEDULES, build_optimizer, lr_factor, set_lr


def tiny() -> tuple[TransferModel, list[LayerGroup]]:
    torch.manual_seed(0)
    model = TransferModel(nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 6)), nn.Linear(6, 3))
    groups = [
        LayerGroup(f"blocks.{i}", tuple((f"backbone.{i}.{n}", p)
                                        for n, p in model.backbone[i].named_parameters()))
        for i in range(2)
    ] + [LayerGroup("head", tuple((f"head.{n}", p) for n, p in model.head.named_parameters()))]
    return model, groups


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_one_param_group_per_layer_group(name):
    model, groups = tiny()
    opt = build_optimizer(groups, name=name, lr=0.1, weight_decay=0.01, momentum=0.9)
    assert [g["name"] for g in opt.param_groups] == ["blocks.0", "blocks.1", "head"]
    assert all(g["lr_scale"] == 1.0 for g in opt.param_groups)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == len(list(model.parameters()))
    if name == "sgd":
        assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match=r"optim\.name='adam' is not one of adamw, sgd"):
        build_optimizer(groups, name="adam", lr=0.1, weight_decay=0.0, momentum=0.9)


def test_set_lr_multiplies_base_schedule_and_lr_scale():
    _, groups = tiny()
    opt = build_optimizer(groups, name="adamw", lr=0.1, weight_decay=0.0, momentum=0.9)
    for g, scale in zip(opt.param_groups, (0.0, 0.5, 1.0), strict=True):
        g["lr_scale"] = scale
    set_lr(opt, 0.1, 0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0, 0.025, 0.05])


def test_cosine_with_warmup_endpoints():
    kw = {"name": "cosine", "warmup_frac": 0.1, "min_lr_ratio": 0.05}
    assert lr_factor(0, 100, **kw) == pytest.approx(0.1)  # first of 10 warmup steps
    assert lr_factor(9, 100, **kw) == pytest.approx(1.0)
    assert lr_factor(10, 100, **kw) == pytest.approx(1.0)  # the peak, then down
    assert lr_factor(55, 100, **kw) == pytest.approx(0.05 + 0.95 * 0.5)  # halfway down
    assert lr_factor(100, 100, **kw) == pytest.approx(0.05)
    factors = [lr_factor(s, 100, **kw) for s in range(10, 101)]
    assert factors == sorted(factors, reverse=True)
    assert lr_factor(0, 100, name="cosine", warmup_frac=0.0, min_lr_ratio=0.0) == 1.0
    assert lr_factor(100, 100, name="cosine", warmup_frac=0.0, min_lr_ratio=0.0) == 0.0


def test_constant_schedule_and_unknown_names():
    assert [lr_factor(s, 10, name="constant", warmup_frac=0.2, min_lr_ratio=0.0)
            for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]
    assert tuple(SCHEDULES) == ("cosine", "constant")
    with pytest.raises(ValueError, match=r"sched\.name='step'"):
        lr_factor(0, 10, name="step", warmup_frac=0.0, min_lr_ratio=0.0)


def test_l2sp_pulls_the_backbone_to_its_start_and_the_head_to_zero():
    model, _ = tiny()
    backbone_only = L2SP(model, alpha=2.0, beta=0.0)
    assert backbone_only.penalty(model).item() == 0.0  # at the pretrained weights
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.1)
    n = sum(p.numel() for p in model.backbone.parameters())
    assert backbone_only.penalty(model).item() == pytest.approx(2.0 / 2 * n * 0.01, rel=1e-4)
    with torch.no_grad():
        model.backbone[0].weight.add_(0.1)
    assert backbone_only.penalty(model).item() > 2.0 / 2 * n * 0.01  # grows as weights move

    head_only = L2SP(model, alpha=0.0, beta=0.5)
    expected = 0.5 / 2 * sum(p.pow(2).sum().item() for p in model.head.parameters())
    assert head_only.penalty(model).item() == pytest.approx(expected, rel=1e-5)
    head_only.penalty(model).backward()
    assert torch.allclose(model.head.weight.grad, 0.5 * model.head.weight)
    assert math.isfinite(L2SP(model, alpha=1.0, beta=1.0).penalty(model).item())
