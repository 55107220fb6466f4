"""Backbones and their weights sources: none, local files, a real local MLflow store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow
import pytest
import safetensors.torch
import timm
import torch
from mlflow import MlflowClient

from xferlab.backbones import (
    BackboneError,
    WeightsError,
    check_model_name,
    create_backbone,
    normalization,
    save_backbone,
)

STEM = {"test_resnet": "conv1.0", "test_vit": "patch_embed.proj"}


def source_model(name: str) -> torch.nn.Module:
    """A 3-channel model with a 7-class classifier, as published weights come."""
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=7, in_chans=3,
                             **({"img_size": 32} if name == "test_vit" else {}))


def save(model: torch.nn.Module, path: Path) -> Path:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(state, path)
    else:
        torch.save(state, path)
    return path


def test_model_names():
    assert check_model_name("test_resnet") is None
    assert check_model_name("resnet18.a1_in1k") is None
    assert check_model_name("resnt18") == (
        "backbone.name='resnt18' is not a timm model (did you mean 'resnet18'?)")
    assert "'zz' is not a weights tag of resnet18 (tags: " in check_model_name("resnet18.zz")
    with pytest.raises(BackboneError, match=r"did you mean 'test_resnet'"):
        create_backbone("test_resnt", pretrained="none", in_chans=1, image_size=32)


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_random_init_gives_pooled_features(name):
    backbone, report = create_backbone(name, pretrained="none", in_chans=1, image_size=32,
                                       drop_path_rate=0.1 if name == "test_vit" else 0.0)
    assert backbone(torch.randn(2, 1, 32, 32)).shape == (2, backbone.num_features)
    assert (report.source, report.digest, report.missing, report.unexpected) == (
        "none", None, [], [])


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_file_weights_drop_the_classifier_and_adapt_the_channels(tmp_path, name, suffix):
    src = source_model(name)
    path = save(src, tmp_path / f"weights{suffix}")
    backbone, report = create_backbone(name, pretrained=f"file:{path}", in_chans=1,
                                       image_size=32)
    got, want = backbone.state_dict(), src.state_dict()
    stem = f"{STEM[name]}.weight"
    # RGB stem weights (O, 3, k, k) become grey ones (O, 1, k, k): their sum over the channels
    assert torch.allclose(got[stem], want[stem].sum(dim=1, keepdim=True))
    assert all(torch.equal(got[k], want[k]) for k in got if k != stem)
    assert report.source == f"file:{path.resolve()}"
    assert report.digest == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert (report.missing, report.unexpected) == ([], [])


def test_save_backbone_round_trips(tmp_path):
    backbone, _ = create_backbone("test_vit", pretrained="none", in_chans=1, image_size=32)
    digest = save_backbone(backbone, tmp_path / "sub" / "backbone.safetensors")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["backbone.safetensors"]
    loaded, report = create_backbone("test_vit", in_chans=1, image_size=32,
                                      pretrained=f"file:{tmp_path}/sub/backbone.safetensors")
    assert report.digest == digest
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in backbone.state_dict().items())


def corrupt(tmp_path: Path, suffix: str) -> Path:
    path = save(source_model("test_resnet"), tmp_path / f"w{suffix}")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a download cut short
    return path


def pickled_object(tmp_path: Path) -> Path:
    path = tmp_path / "w.pth"
    torch.save({"conv1.0.weight": torch.zeros(1), "opt": Path("x")}, path)  # needs unpickling
    return path


def other_architecture(tmp_path: Path) -> Path:
    return save(source_model("test_vit"), tmp_path / "vit.safetensors")


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: tmp / "nope.safetensors", "no file at .*nope.safetensors; check the path"),
    (lambda tmp: corrupt(tmp, ".safetensors"), "cannot read it as weights .*save it again"),
    (lambda tmp: corrupt(tmp, ".pth"), "cannot read it as weights .*save it again"),
    (pickled_object, "cannot read it as weights .*save it again"),
    (other_architecture, "lacks 45 of 45 parameters of test_resnet .*same architecture"),
    (lambda tmp: (tmp / "w.npz").write_bytes(b"x") and tmp / "w.npz", "use one of .safetensors"),
], ids=["missing", "truncated-safetensors", "truncated-pth", "pickle", "architecture", "suffix"])
def test_unusable_files_are_weights_errors(tmp_path, make, message):
    value = f"file:{make(tmp_path)}"
    with pytest.raises(WeightsError, match=message) as err:
        create_backbone("test_resnet", pretrained=value, in_chans=1, image_size=32)
    assert str(err.value).startswith(f"backbone.pretrained={value!r}")
    assert "\n" not in str(err.value)


def test_same_names_other_shapes_is_a_weights_error(tmp_path):
    torch.manual_seed(0)
    wide = timm.create_model("test_vit", num_classes=0, img_size=32, embed_dim=32)
    path = save(wide, tmp_path / "wide.safetensors")
    with pytest.raises(WeightsError, match=r"does not fit test_vit \(.*size mismatch"):
        create_backbone("test_vit", pretrained=f"file:{path}", in_chans=3, image_size=32)


def test_sources_that_are_not_weights_here(tmp_path):
    with pytest.raises(WeightsError, match=r"'timm:nope' is not a weights tag of test_resnet "
                                           r"\(tags: r160_in1k\)"):
        create_backbone("test_resnet", pretrained="timm:nope", in_chans=1, image_size=32)
    with pytest.raises(WeightsError, match=r"'source:glyphs' is not a weights source here"):
        create_backbone("test_resnet", pretrained="source:glyphs", in_chans=1, image_size=32)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A real local MLflow store (sqlite + artifact folder) as the current tracking URI."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    yield client, client.create_experiment("w", artifact_location=(tmp_path / "art").as_uri())
    mlflow.set_tracking_uri(None)


def test_mlflow_weights_by_file_and_by_folder(tmp_path, mlflow_store):
    client, experiment = mlflow_store
    src = source_model("test_resnet")
    path = save(src, tmp_path / "backbone.safetensors")
    run = client.create_run(experiment).info.run_id
    client.log_artifact(run, str(path))
    client.log_artifact(run, str(path), artifact_path="checkpoint")
    for uri in (f"runs:/{run}/backbone.safetensors", f"runs:/{run}/checkpoint"):
        backbone, report = create_backbone("test_resnet", pretrained=f"mlflow:{uri}",
                                           in_chans=3, image_size=32)
        assert torch.equal(backbone.state_dict()["layer4.0.conv2.weight"],
                           src.state_dict()["layer4.0.conv2.weight"])
        assert report.source == f"mlflow:{uri}"
        assert report.digest == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    with pytest.raises(WeightsError, match=r"could not be downloaded .*check the run id"):
        create_backbone("test_resnet", pretrained=f"mlflow:runs:/{run}/nope.safetensors",
                        in_chans=3, image_size=32)


def test_normalization_per_input_channel():
    backbone, _ = create_backbone("resnet18", pretrained="none", in_chans=3, image_size=32)
    mean, std = normalization(backbone, 3)
    assert mean == pytest.approx((0.485, 0.456, 0.406)) and len(std) == 3
    grey_mean, grey_std = normalization(backbone, 1)
    assert grey_mean == pytest.approx((sum(mean) / 3,)) and grey_std == pytest.approx(
        (sum(std) / 3,))
