"""Heads on pooled features: shapes for every conf/head option, the cosine head's bound."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from xferlab.config import HeadConfig
from xferlab.heads import TransferModel, make_head

HEAD_YAMLS = sorted((Path(__file__).resolve().parents[1] / "conf" / "head").rglob("*.yaml"))


def head_from(cfg, in_features: int = 16, classes: int = 5, **changes):
    h = {**OmegaConf.to_container(cfg), **changes}
    return make_head(h["kind"], in_features, classes, hidden=h["hidden"], dropout=h["dropout"],
                     scale=h["scale"], learn_scale=h["learn_scale"])


@pytest.mark.parametrize("yaml", HEAD_YAMLS, ids=lambda p: p.stem)
def test_every_head_option_maps_features_to_logits(yaml):
    head = head_from(OmegaConf.merge(OmegaConf.structured(HeadConfig), OmegaConf.load(yaml)))
    assert head(torch.randn(8, 16)).shape == (8, 5)
    assert len(HEAD_YAMLS) == 3


def test_cosine_logits_are_bounded_by_the_scale():
    head = head_from(OmegaConf.structured(HeadConfig), kind="cosine", scale=4.0)
    logits = head(100 * torch.randn(64, 16))
    assert logits.abs().max() <= 4.0 + 1e-5 and logits.abs().max() > 1.0


@pytest.mark.parametrize("learn", [True, False])
def test_learn_scale_makes_the_scale_a_parameter_or_a_constant(learn):
    head = head_from(OmegaConf.structured(HeadConfig), kind="cosine", learn_scale=learn)
    assert ("scale" in dict(head.named_parameters())) == learn
    assert ("scale" in dict(head.named_buffers())) != learn
    head(torch.randn(4, 16)).sum().backward()
    assert (head.scale.grad is not None) == learn


def test_unknown_kind_and_the_transfer_model():
    with pytest.raises(ValueError, match=r"head\.kind='svm' is not one of linear, mlp, cosine"):
        head_from(OmegaConf.structured(HeadConfig), kind="svm")
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16))
    model = TransferModel(backbone, head_from(OmegaConf.structured(HeadConfig)))
    x = torch.randn(3, 3, 2, 2)
    assert model.forward_features(x).shape == (3, 16) and model(x).shape == (3, 5)
