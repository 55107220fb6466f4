"""Extending xferlab (issue 17): a new freezing strategy, head and data kind are each one
decorated definition plus one YAML, and nothing else.

A plugin written into a temporary folder holds the definitions in one module and one YAML each
in a conf folder of conf/'s layout. The real CLI imports it (XFERLAB_PLUGINS; an installed
package would use the `xferlab.plugins` entry-point group instead), finds the YAMLs on Hydra's
search path through the module's CONF_DIR, trains on them and logs to a real MLflow store; a
misspelt name is answered with the new options among the choices. A second strategy, head and
data kind have a key of their own each: a dataclass field with its default and a Range, which
become a config key with its check, and nothing else either.

The plugin is never imported into the test process: the registries here stay as xferlab ships
them for the other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, experiment_runs, store_uri

PLUGIN = "xferlab_plugin_test"

# The definitions, each the whole of what xferlab needs in Python: a strategy, a head and a data
# kind with no keys of their own, then one of each with a key.
MODULE = '''
"""One freezing strategy, one head and one data kind that xferlab does not ship."""

from dataclasses import dataclass
from pathlib import Path

from xferlab.config import Range
from xferlab.data import DATA_KINDS, DataKind, Loaded
from xferlab.freezing import STRATEGIES, Plan, Strategy
from xferlab.heads import HEADS, Head

CONF_DIR = Path(__file__).parent / "conf"  # freeze/, head/ and data/ as in xferlab's conf/


@STRATEGIES.register("stem_only")
@dataclass(frozen=True)
class StemOnly(Strategy):
    """The stem and the head train; every block between them stays frozen."""

    def plan(self, n_groups, epoch):
        return Plan((1.0,) + (0.0,) * (n_groups - 2) + (1.0,))


@HEADS.register("no_bias")
@dataclass(frozen=True)
class NoBias(Head):
    """One linear layer without a bias."""

    def build(self, in_features, num_classes):
        from torch import nn

        return nn.Linear(in_features, num_classes, bias=False)


@DATA_KINDS.register("stripes")
@dataclass(frozen=True)
class Stripes(DataKind):
    """100 images of horizontal and 100 of vertical stripes, 16x16, random period and phase."""

    def load(self, *, seed, **_):
        return stripes(100, seed)


def stripes(per_class, seed):
    import numpy as np
    import torch

    from xferlab.data import Split

    n = 2 * per_class
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    period, phase = rng.integers(2, 6, n), rng.integers(0, 6, n)
    wave = ((np.arange(16) + phase[:, None]) // period[:, None] % 2 * 255).astype(np.uint8)
    rows = np.repeat(wave[:, :, None], 16, axis=2)  # stripes across the rows: horizontal
    images = np.where(labels[:, None, None] == 0, rows, rows.transpose(0, 2, 1))
    return Loaded(Split(torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels)),
                  ["horizontal", "vertical"])


# The same, each with a key of its own: a dataclass field with its default, checked by a Range.

@STRATEGIES.register("stem_scaled",
                     stem_scale=Range(lambda s: s > 0, "use freeze.stem_scale > 0"))
@dataclass(frozen=True)
class StemScaled(Strategy):
    """The stem trains at stem_scale times the head's lr; every block between stays frozen."""

    stem_scale: float = 0.5

    def plan(self, n_groups, epoch):
        return Plan((self.stem_scale,) + (0.0,) * (n_groups - 2) + (1.0,))


@HEADS.register("bottleneck", width=Range(lambda w: w >= 1, "use head.width >= 1"))
@dataclass(frozen=True)
class Bottleneck(Head):
    """Two linear layers without biases, through `width` features."""

    width: int = 8

    def build(self, in_features, num_classes):
        from torch import nn

        return nn.Sequential(nn.Linear(in_features, self.width, bias=False),
                             nn.Linear(self.width, num_classes, bias=False))


@DATA_KINDS.register("bars", bars_per_class=Range(lambda n: n >= 10,
                                                  "use data.bars_per_class >= 10"))
@dataclass(frozen=True)
class Bars(DataKind):
    """`stripes`, bars_per_class images of each."""

    bars_per_class: int = 100

    def load(self, *, seed, **_):
        return stripes(self.bars_per_class, seed)
'''

# One YAML per option, as conf/'s own (e.g. conf/freeze/linear_probe.yaml, conf/data/digits.yaml).
YAMLS = {
    "freeze/stem_only.yaml": "# The stem and the head train: xferlab train freeze=stem_only\n"
                             "strategy: stem_only\n",
    "head/no_bias.yaml": "# A linear head without a bias: xferlab train head=no_bias\n"
                         "kind: no_bias\n",
    "data/stripes.yaml": "# Horizontal vs vertical stripes: xferlab train data=stripes\n"
                         "kind: stripes\nname: stripes\nnum_classes: 2\nimage_size: 16\n"
                         "in_chans: 1\n",
}
YAMLS_WITH_KEYS = {
    "freeze/stem_scaled.yaml": "# The stem at a share of the lr, the head: xferlab train "
                               "freeze=stem_scaled freeze.stem_scale=0.5\n"
                               "strategy: stem_scaled\nstem_scale: 0.5\n",
    "head/bottleneck.yaml": "# Two linear layers: xferlab train head=bottleneck head.width=8\n"
                            "kind: bottleneck\nwidth: 8\n",
    "data/bars.yaml": "# stripes, bars_per_class of each: xferlab train data=bars\n"
                      "kind: bars\nname: bars\nnum_classes: 2\nimage_size: 16\nin_chans: 1\n"
                      "bars_per_class: 100\n",
}
NEW = ["freeze=stem_only", "head=no_bias", "data=stripes"]
NEW_WITH_KEYS = ["freeze=stem_scaled", "head=bottleneck", "data=bars"]
FAST_ANY_DATA = [a for a in FAST if not a.startswith("data=")]
TRAIN = ["train", *FAST_ANY_DATA, *NEW]


@pytest.fixture
def plugin(tmp_path) -> Path:
    """The plugin's folder: its module and its conf folder, nothing else."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / f"{PLUGIN}.py").write_text(textwrap.dedent(MODULE))
    for name, text in {**YAMLS, **YAMLS_WITH_KEYS}.items():
        (folder / "conf" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "conf" / name).write_text(text)
    return folder


def xferlab_with(plugin: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """conftest's `xferlab`, with the plugin importable and named in XFERLAB_PLUGINS."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin), env.get("PYTHONPATH")]))
    env["XFERLAB_PLUGINS"] = PLUGIN
    return subprocess.run([sys.executable, "-m", "xferlab.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_new_strategy_head_and_data_kind_train_through_the_cli(tmp_path, plugin):
    project = tmp_path / "project"
    project.mkdir()
    out = xferlab_with(plugin, *TRAIN, cwd=project)
    assert out.returncode == 0, out.stderr
    [run] = experiment_runs(project)
    assert run.info.status == "FINISHED"
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert (params["freeze.strategy"], params["head.kind"], params["data.kind"]) == (
        "stem_only", "no_bias", "stripes")
    assert (tags["choice.freeze"], tags["choice.head"], tags["choice.data"]) == (
        "stem_only", "no_bias", "stripes")
    assert 0 <= metrics["test/acc"] <= 1

    # the data kind's images: 200, 40 held out for test (20 a class), 24 of the rest for val
    assert params["data.train_size"] == "136"
    client = MlflowClient(store_uri(project))
    rows = client.download_artifacts(run.info.run_id, "per_class_metrics.csv", str(tmp_path))
    support = {line.split(",")[0]: line.split(",")[-1]
               for line in Path(rows).read_text().splitlines()[1:]}
    assert support == {"horizontal": "20", "vertical": "20"}

    # the head: one weight matrix, features x 2 classes, and no bias
    from safetensors import safe_open

    head_file = client.download_artifacts(run.info.run_id, "checkpoint/head.safetensors",
                                          str(tmp_path))
    with safe_open(head_file, "pt") as tensors:
        assert list(tensors.keys()) == ["weight"]
        classes, features = tensors.get_slice("weight").get_shape()
    assert classes == 2

    # the strategy: exactly the stem's parameters and the head's trained (the same backbone
    # built here, without the plugin, and cut into xferlab's layer groups)
    from torch import nn

    from xferlab import backbones, freezing, heads

    backbone, _ = backbones.create_backbone(params["backbone.name"], pretrained="none",
                                            in_chans=1, image_size=16)
    assert backbone.num_features == features
    model = heads.TransferModel(backbone, nn.Linear(features, 2, bias=False))
    groups = freezing.layer_groups(model)
    assert [groups[0].name, groups[-1].name] == ["stem", "head"] and len(groups) > 2
    stem_and_head = sum(p.numel() for g in (groups[0], groups[-1]) for _, p in g.params)
    assert metrics["params/trainable"] == stem_and_head
    assert metrics["params/trainable"] < metrics["params/total"]


def test_misspelt_new_options_are_answered_with_them_among_the_choices(tmp_path, plugin):
    # a group option and the key it sets, each checked before torch is imported
    out = xferlab_with(plugin, "train", "freeze=stem_onyl", "head=no_bais", "data=stripe",
                       cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    for group, wrong, right in [("freeze", "stem_onyl", "stem_only"),
                                ("head", "no_bais", "no_bias"), ("data", "stripe", "stripes")]:
        [line] = [x for x in lines if x.startswith(f"xferlab: error: {group}={wrong!r}")]
        choices = line.split(" choose one of ")[1].split(" (did")[0].split(", ")
        assert f"is not an option of '{group}'" in line and right in choices, line
        assert line.endswith(f"(did you mean {right!r}?)"), line

    out = xferlab_with(plugin, "train", *NEW, "freeze.strategy=stem_onyl", "head.kind=no_bais",
                       "data.kind=stripe", cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    for key, wrong, right in [("freeze.strategy", "stem_onyl", "stem_only"),
                              ("head.kind", "no_bais", "no_bias"),
                              ("data.kind", "stripe", "stripes")]:
        [line] = [x for x in lines if x.startswith(f"xferlab: error: {key}={wrong!r}")]
        choices = line.split(" is not one of ")[1].split(" (did")[0].split(", ")
        assert right in choices and line.endswith(f"(did you mean {right!r}?)"), line
    assert "Traceback" not in out.stderr and experiment_runs(tmp_path) == []


def test_new_options_bring_their_own_keys_with_defaults_and_ranges(tmp_path, plugin):
    # each key is a config key (a typo gets a close match), and is checked against its Range
    out = xferlab_with(plugin, "train", *FAST_ANY_DATA, *NEW_WITH_KEYS, "freeze.stem_scal=1",
                       "head.width=0", "data.bars_per_class=5", cwd=tmp_path)
    assert out.returncode == 2
    assert "freeze.stem_scal is not a config key (did you mean 'freeze.stem_scale'?)" in out.stderr
    out = xferlab_with(plugin, "train", *FAST_ANY_DATA, *NEW_WITH_KEYS, "freeze.stem_scale=0",
                       "head.width=0", "data.bars_per_class=5", cwd=tmp_path)
    assert out.returncode == 2
    assert {line for line in out.stderr.splitlines()} == {
        "xferlab: error: freeze.stem_scale=0.0 is out of range: use freeze.stem_scale > 0",
        "xferlab: error: head.width=0 is out of range: use head.width >= 1",
        "xferlab: error: data.bars_per_class=5 is out of range: use data.bars_per_class >= 10"}

    # and reaches its definition: a run with each set
    out = xferlab_with(plugin, "train", *FAST_ANY_DATA, *NEW_WITH_KEYS, "freeze.stem_scale=0.25",
                       "head.width=3", "data.bars_per_class=50", "sched=constant", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    [run] = experiment_runs(tmp_path)
    params, metrics = run.data.params, run.data.metrics
    assert (params["freeze.stem_scale"], params["head.width"], params["data.bars_per_class"]) == (
        "0.25", "3", "50")
    # the strategy: the stem at a quarter of the head's lr, the blocks frozen (groups that never
    # train log no lr series)
    assert metrics["lr/stem"] == pytest.approx(0.25 * metrics["lr/head"])
    assert {k for k in metrics if k.startswith("lr")} == {"lr/stem", "lr/head"}
    # the data kind: 100 images, 20 held out for test (10 a class), 12 of the rest for val
    assert params["data.train_size"] == "68"
    # the head: features -> 3 -> 2 classes
    from safetensors import safe_open

    head_file = MlflowClient(store_uri(tmp_path)).download_artifacts(
        run.info.run_id, "checkpoint/head.safetensors", str(tmp_path / "artifacts"))
    with safe_open(head_file, "pt") as tensors:
        names = tensors.keys()
        shapes = {k: tensors.get_slice(k).get_shape() for k in names}
    assert shapes.keys() == {"0.weight", "1.weight"}
    assert shapes["0.weight"][0] == 3 and shapes["1.weight"] == [2, 3]
