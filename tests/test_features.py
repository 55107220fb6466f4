"""The frozen-feature cache: hits, misses, invalidation, atomic writes, identical results."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, store_uri
from xferlab import backbones, engine, features, tracking
from xferlab.launch.compose import compose_with_choices
from xferlab.recipes import train


@pytest.fixture
def backbone():
    torch.manual_seed(0)
    model, _ = backbones.create_backbone("test_resnet", pretrained="none", in_chans=1,
                                         image_size=16, drop_path_rate=0.0)
    return model


def _loop(mean=(0.5,), std=(0.25,)) -> engine.Loop:
    return engine.Loop(mean=mean, std=std, device=torch.device("cpu"), progress=False)


def _images(n=24, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def _entries(root):
    return sorted(p.name for p in root.glob("*.safetensors"))


def test_a_second_cache_on_the_same_inputs_hits_and_returns_the_same_features(backbone, tmp_path):
    images = _images()
    first = features.FeatureCache(backbone, _loop(), root=tmp_path)
    computed = first(images)
    assert (first.hits, first.misses) == (0, 1) and len(_entries(tmp_path)) == 1
    assert computed.shape == (24, backbone.num_features)
    again = features.FeatureCache(backbone, _loop(), root=tmp_path)
    assert torch.equal(again(images), computed)
    assert (again.hits, again.misses) == (1, 0)
    assert torch.allclose(computed, features.extract(backbone, images, _loop()))


def test_each_key_part_invalidates_the_entry(backbone, tmp_path):
    images = _images()
    features.FeatureCache(backbone, _loop(), root=tmp_path)(images)
    other_data = _images(seed=1)
    subset = images[:20]
    resized = torch.nn.functional.interpolate(images.float(), size=20).to(torch.uint8)
    for changed, (model, loop, x) in {
        "dataset": (backbone, _loop(), other_data),
        "subset": (backbone, _loop(), subset),
        "transform: resize": (backbone, _loop(), resized),
        "transform: normalisation": (backbone, _loop(mean=(0.4,)), images),
    }.items():
        cache = features.FeatureCache(model, loop, root=tmp_path)
        cache(x)
        assert cache.misses == 1, changed
    with torch.no_grad():
        next(backbone.parameters()).add_(0.01)  # new weights
    cache = features.FeatureCache(backbone, _loop(), root=tmp_path)
    cache(images)
    assert cache.misses == 1
    assert len(_entries(tmp_path)) == 6


def test_a_truncated_entry_is_a_miss_and_is_rewritten(backbone, tmp_path):
    images = _images()
    expected = features.FeatureCache(backbone, _loop(), root=tmp_path)(images)
    [entry] = tmp_path.glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])
    cache = features.FeatureCache(backbone, _loop(), root=tmp_path)
    assert torch.equal(cache(images), expected) and cache.misses == 1
    assert features.FeatureCache(backbone, _loop(), root=tmp_path)(images).shape == expected.shape


def test_a_write_killed_midway_leaves_no_valid_looking_entry(backbone, tmp_path):
    # a real SIGKILL while the file is half written: only a temporary file may remain
    script = textwrap.dedent(f"""
        import os, signal, torch
        from pathlib import Path
        from xferlab import backbones, engine, features
        from xferlab.backbones import _models
        def half_write(tensors, path, metadata=None):
            with open(path, "wb") as f:
                f.write(b"x" * 1000)
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        _models.save_file = half_write  # what write_tensors calls
        torch.manual_seed(0)
        model, _ = backbones.create_backbone("test_resnet", pretrained="none", in_chans=1,
                                             image_size=16, drop_path_rate=0.0)
        loop = engine.Loop(mean=(0.5,), std=(0.25,), device=torch.device("cpu"), progress=False)
        x = torch.randint(0, 256, (24, 1, 16, 16), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
        features.FeatureCache(model, loop, root=Path({str(tmp_path)!r}))(x)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False)
    assert done.returncode == -9, done.stderr
    assert _entries(tmp_path) == [] and list(tmp_path.glob(".*.tmp"))
    cache = features.FeatureCache(backbone, _loop(), root=tmp_path)
    cache(_images())
    assert cache.misses == 1 and len(_entries(tmp_path)) == 1


def test_stochastic_backbones_are_not_cached():
    drop_path, _ = backbones.create_backbone("test_vit", pretrained="none", in_chans=1,
                                             image_size=16, drop_path_rate=0.1)
    assert not features.deterministic(drop_path)
    plain, _ = backbones.create_backbone("test_vit", pretrained="none", in_chans=1,
                                         image_size=16, drop_path_rate=0.0)
    assert features.deterministic(plain)


def _run(strategy: str, cache: str):
    overrides = [*FAST, f"freeze={strategy}", "trainer.epochs=3", "freeze.lp_epochs=2",
                 "data.fraction=0.3", f"trainer.feature_cache={cache}", "seed=5"]
    cfg, choices = compose_with_choices(overrides)
    return train.train(cfg, tracking.Launch(choices=choices, overrides=overrides)).run_id


@pytest.mark.parametrize("strategy", ["linear_probe", "lp_ft"])
def test_metrics_are_the_same_with_and_without_the_cache(project, strategy):
    client = MlflowClient(store_uri(project))
    cold, warm, off = (client.get_run(_run(strategy, c)) for c in ("auto", "auto", "off"))
    # train and val; and test where the backbone never trained
    splits = 3 if strategy == "linear_probe" else 2
    assert cold.data.tags["feature_cache"] == f"0 hits, {splits} misses"
    assert warm.data.tags["feature_cache"] == f"{splits} hits, 0 misses"
    assert "feature_cache" not in off.data.tags
    for run in (cold, warm):
        for key in ("val/acc", "val/acc_best", "test/acc", "best/epoch"):
            assert run.data.metrics[key] == off.data.metrics[key], key
        for key in ("train/loss", "val/loss", "test/loss"):
            assert run.data.metrics[key] == pytest.approx(off.data.metrics[key], rel=1e-5), key
        history = [m.value for m in client.get_metric_history(run.info.run_id, "val/loss")]
        expected = [m.value for m in client.get_metric_history(off.info.run_id, "val/loss")]
        assert history == pytest.approx(expected, rel=1e-5)


def test_augmented_and_fine_tuned_runs_never_use_the_cache(project):
    client = MlflowClient(store_uri(project))
    for extra in (["freeze=linear_probe", "data.augment=light"], ["freeze=full"]):
        overrides = [*FAST, *extra]
        cfg, choices = compose_with_choices(overrides)
        run_id = train.train(cfg, tracking.Launch(choices=choices, overrides=overrides)).run_id
        assert "feature_cache" not in client.get_run(run_id).data.tags
    assert not (project / "outputs" / "cache" / "features").exists()
