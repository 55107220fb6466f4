"""Layer groups and freezing plans, on timm's tiny test models: what a plan freezes stays put."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from xferlab.backbones import create_backbone
from xferlab.config import FreezeConfig
from xferlab.freezing import (
    STRATEGIES,
    LoraError,
    Plan,
    add_lora,
    apply_plan,
    layer_groups,
    make_plan,
    train_mode,
)
from xferlab.heads import TransferModel, make_head
from xferlab.optim import build_optimizer, set_lr

FREEZE_YAMLS = sorted((Path(__file__).resolve().parents[1] / "conf" / "freeze").rglob("*.yaml"))
ARCHS = ("test_resnet", "test_vit", "test_convnext")


def build(name: str, strategy: str = "full", classes: int = 5) -> TransferModel:
    torch.manual_seed(0)
    backbone, _ = create_backbone(name, pretrained="none", in_chans=1, image_size=32)
    if strategy == "lora":
        backbone = add_lora(backbone, rank=2, alpha=4.0, targets=None)
    head = make_head("linear", backbone.num_features, classes, hidden=8, dropout=0.0, scale=16.0,
                     learn_scale=True)
    model = TransferModel(backbone, head)
    with torch.no_grad():
        # like pretrained weights, none exactly zero: timm zero-inits each ResNet block's last
        # BN, which would leave a bitfit block's biases without any gradient
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def plan_of(f, n_groups: int, epoch: int) -> Plan:
    return make_plan(f.strategy, n_groups, epoch, k=f.k, every=f.every, lp_epochs=f.lp_epochs,
                     ft_lr_scale=f.ft_lr_scale, decay=f.decay, norms=f.norms)


def steps(model, groups, plan, opt, n: int = 2) -> None:
    """n AdamW steps on random 32x32 batches of 8, as the engine takes them."""
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        train_mode(model, groups, plan)
        set_lr(opt, 1e-2, 1.0)
        x, y = torch.randn(8, 1, 32, 32, generator=g), torch.randint(0, 5, (8,), generator=g)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()


def expected_trainable(model, groups, plan) -> set[str]:
    """The plan's meaning, written out independently of freezing's own bookkeeping."""
    norms = {f"{m}.{n}" for m, mod in model.named_modules() if "norm" in type(mod).__name__.lower()
             for n, _ in mod.named_parameters(recurse=False)}
    keep = {"bias": lambda n: n.endswith("bias"), "lora": lambda n: "lora_" in n,
            "bias_norm": lambda n: n.endswith("bias") or n in norms,
            None: lambda n: True}[plan.only]
    last = len(groups) - 1
    return {name for i, g in enumerate(groups) for name, _ in g.params
            if plan.lr_scale[i] > 0 and (i == last or keep(name))}


def test_the_freeze_yamls_cover_every_strategy():
    assert len(FREEZE_YAMLS) == len(STRATEGIES) == 10
    assert {OmegaConf.load(p).strategy for p in FREEZE_YAMLS} == set(STRATEGIES)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("yaml", FREEZE_YAMLS, ids=lambda p: p.stem)
def test_a_plan_freezes_exactly_what_it_says(arch, yaml):
    f = OmegaConf.merge(OmegaConf.structured(FreezeConfig), OmegaConf.load(yaml))
    model = build(arch, f.strategy)
    groups = layer_groups(model)
    # epoch 2: gradual has two groups open, lp_ft (lp_epochs=2) has just started fine-tuning
    plan = plan_of(f, len(groups), epoch=2)
    opt = build_optimizer(groups, name="adamw", lr=1e-2, weight_decay=0.1, momentum=0.9)
    trainable = apply_plan(model, groups, plan, opt)

    want = expected_trainable(model, groups, plan)
    params = dict(model.named_parameters())
    assert trainable == sum(params[n].numel() for n in want)
    assert want
    before = {n: p.detach().clone() for n, p in params.items()}
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    stats = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in bns.items()}

    steps(model, groups, plan, opt)

    frozen = [n for n in params if torch.equal(params[n], before[n])]
    assert set(frozen) == set(params) - want  # frozen ones bit-identical, all others moved
    for n, m in bns.items():
        bn_trains = any(f"{n}.{p}" in want for p in ("weight", "bias"))
        unchanged = torch.equal(m.running_mean, stats[n][0]) and torch.equal(m.running_var,
                                                                              stats[n][1])
        assert unchanged != bn_trains, n
    if arch == "test_resnet" and f.strategy in ("linear_probe", "lora"):
        assert bns and all(not m.training for m in bns.values())


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_trains_the_adapters_and_the_head_only(arch):
    model = build(arch, "lora")
    groups = layer_groups(model)
    opt = build_optimizer(groups, name="adamw", lr=1e-3, weight_decay=0.0, momentum=0.9)
    plan = make_plan("lora", len(groups), 0, k=2, every=1, lp_epochs=2, ft_lr_scale=0.1,
                     decay=0.75, norms=False)
    adapters = sum(p.numel() for n, p in model.backbone.named_parameters() if "lora_" in n)
    head = sum(p.numel() for p in model.head.parameters())
    assert adapters > 0
    assert apply_plan(model, groups, plan, opt) == adapters + head


def test_lora_without_peft_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # what an environment without peft sees
    backbone, _ = create_backbone("test_vit", pretrained="none", in_chans=1, image_size=32)
    with pytest.raises(LoraError, match=r"freeze=lora needs peft: pip install 'xferlab\[lora\]'"):
        add_lora(backbone, rank=2, alpha=4.0, targets=None)


def test_lora_targets_by_name_and_a_target_that_matches_nothing():
    backbone, _ = create_backbone("test_vit", pretrained="none", in_chans=1, image_size=32)
    add_lora(backbone, rank=2, alpha=4.0, targets=["qkv"])
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in backbone.named_parameters() if "lora_A" in n}
    assert adapted == {f"blocks.{i}.attn.qkv" for i in range(6)}
    backbone, _ = create_backbone("test_vit", pretrained="none", in_chans=1, image_size=32)
    with pytest.raises(LoraError, match=r"freeze.targets=\['nope'\]"):
        add_lora(backbone, rank=2, alpha=4.0, targets=["nope"])


def test_bitfit_with_norms_trains_biases_and_norm_affines():
    model = build("test_vit")
    groups = layer_groups(model)
    opt = build_optimizer(groups, name="adamw", lr=1e-3, weight_decay=0.0, momentum=0.9)
    plan = make_plan("bitfit", len(groups), 0, k=2, every=1, lp_epochs=2, ft_lr_scale=0.1,
                     decay=0.75, norms=True)
    apply_plan(model, groups, plan, opt)
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"backbone.blocks.0.norm1.weight", "backbone.blocks.0.attn.qkv.bias",
            "backbone.norm.weight", "head.weight"} <= trains
    assert "backbone.blocks.0.attn.qkv.weight" not in trains


@pytest.mark.parametrize(("strategy", "expected"), [
    # test_resnet: stem, blocks.0-3, head; every=2, lp_epochs=2
    ("gradual", [["head"], ["head"], ["blocks.3", "head"], ["blocks.3", "head"],
                 ["blocks.2", "blocks.3", "head"]]),
    ("lp_ft", [["head"], ["head"]] + [["stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3",
                                       "head"]] * 3),
    ("block_k", [["blocks.1", "head"]] * 5),  # k=2: group 2 counting the stem as 0
])
def test_trainable_groups_per_epoch(strategy, expected):
    groups = layer_groups(build("test_resnet"))
    got = []
    for epoch in range(5):
        plan = make_plan(strategy, len(groups), epoch, k=2, every=2, lp_epochs=2,
                         ft_lr_scale=0.1, decay=0.75, norms=False)
        got.append([g.name for g, s in zip(groups, plan.lr_scale, strict=True) if s > 0])
        if strategy == "lp_ft" and epoch >= 2:
            assert plan.lr_scale == (0.1,) * 5 + (1.0,)
    assert got == expected
    assert len(groups) == 6


def test_unfreezing_keeps_the_optimizer_and_its_state():
    model = build("test_resnet")
    groups = layer_groups(model)
    opt = build_optimizer(groups, name="adamw", lr=1e-2, weight_decay=0.1, momentum=0.9)
    for epoch in range(3):  # lp_ft with lp_epochs=2: two probing epochs, then fine-tuning
        plan = make_plan("lp_ft", len(groups), epoch, k=2, every=1, lp_epochs=2,
                         ft_lr_scale=0.1, decay=0.75, norms=False)
        apply_plan(model, groups, plan, opt)
        steps(model, groups, plan, opt, n=1)
    assert opt.state[model.head.weight]["step"] == 3  # its state lived through the unfreeze
    assert opt.state[model.backbone.conv1[0].weight]["step"] == 1


def test_layer_decay_lr_ratios_are_decay_to_the_depth():
    model = build("test_vit")
    groups = layer_groups(model)
    opt = build_optimizer(groups, name="sgd", lr=0.1, weight_decay=0.0, momentum=0.9)
    plan = make_plan("layer_decay", len(groups), 0, k=2, every=1, lp_epochs=2, ft_lr_scale=0.1,
                     decay=0.5, norms=False)
    apply_plan(model, groups, plan, opt)
    set_lr(opt, 0.1, 0.5)
    ratios = [g["lr"] / (0.1 * 0.5) for g in opt.param_groups]
    assert ratios == pytest.approx([0.5 ** d for d in range(len(groups) - 1, -1, -1)])
    assert ratios[-1] == 1.0 and opt.param_groups[-1]["name"] == "head"


def test_plans_are_pure_and_unknown_strategies_fail():
    kw = {"k": 2, "every": 1, "lp_epochs": 2, "ft_lr_scale": 0.1, "decay": 0.75, "norms": False}
    for strategy in STRATEGIES:
        for epoch in range(4):
            assert make_plan(strategy, 8, epoch, **kw) == make_plan(strategy, 8, epoch, **kw)
    assert make_plan("scratch", 8, 0, **kw) == make_plan("full", 8, 0, **kw)
    assert make_plan("last_k", 8, 0, **kw).lr_scale == (0.0,) * 5 + (1.0,) * 3
    with pytest.raises(ValueError, match=r"freeze.strategy='lastk'.*did you mean 'last_k'"):
        make_plan("lastk", 8, 0, **kw)


@pytest.mark.parametrize(("arch", "n_blocks"), [
    ("test_resnet", 4), ("resnet18", 8), ("test_vit", 6), ("test_convnext", 9),
])
def test_layer_groups_cover_every_parameter_once_head_last(arch, n_blocks):
    torch.manual_seed(0)
    backbone, _ = create_backbone(arch, pretrained="none", in_chans=3, image_size=32)
    model = TransferModel(backbone, nn.Linear(backbone.num_features, 3))
    groups = layer_groups(model)
    assert [g.name for g in groups] == ["stem", *(f"blocks.{i}" for i in range(n_blocks)), "head"]
    names = [n for g in groups for n, _ in g.params]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())  # each exactly once
    assert all(p is dict(model.named_parameters())[n] for g in groups for n, p in g.params)
    assert [n for n, _ in groups[-1].params] == ["head.weight", "head.bias"]
    last = {n for n, _ in groups[-2].params}
    # a final norm belongs to the last block, whatever the model calls it
    assert {"backbone.norm.weight", "backbone.head.norm.weight"} & last or "resnet" in arch


def test_adamw_weight_decay_skips_a_parameter_without_grad():
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([a, b], lr=0.1, weight_decay=0.5)
    a.grad = torch.ones(3)  # b.grad stays None, as for a frozen parameter
    opt.step()
    assert torch.equal(b, torch.ones(3)) and not torch.equal(a, torch.ones(3))


def test_refreezing_drops_stale_grads():
    model = build("test_resnet")
    groups = layer_groups(model)
    opt = build_optimizer(groups, name="sgd", lr=0.1, weight_decay=0.1, momentum=0.9)
    kw = {"k": 2, "every": 1, "lp_epochs": 2, "ft_lr_scale": 0.1, "decay": 0.75, "norms": False}
    apply_plan(model, groups, make_plan("full", len(groups), 0, **kw), opt)
    F.cross_entropy(model(torch.randn(8, 1, 32, 32)), torch.arange(8) % 5).backward()
    apply_plan(model, groups, make_plan("linear_probe", len(groups), 0, **kw), opt)
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.weight.grad is not None
