"""Sources xferlab builds itself: built once, reused, rebuilt when their config changes, linked."""

from __future__ import annotations

import json

from tests.conftest import FAST, experiment_runs, xferlab

TINY_SOURCE = ["data.size=1240", "trainer.max_steps=4", "trainer.progress=false"]
SOURCE_OVERRIDES = 'backbone.source_overrides=["data.size=1240","trainer.max_steps=4"]'


def test_pretrain_builds_once_and_rebuilds_when_the_config_changes(tmp_path):
    first = xferlab("pretrain", "backbone=resnet_tiny", *TINY_SOURCE, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    files = sorted((tmp_path / "outputs" / "sources").glob("*.safetensors"))
    assert len(files) == 1 and files[0].name.startswith("test_resnet-glyphs-")
    meta = json.loads(files[0].with_suffix(".json").read_text())
    [run] = experiment_runs(tmp_path, "xferlab-sources")
    assert run.info.status == "FINISHED" and meta["run_id"] == run.info.run_id
    assert run.data.params["data.kind"] == "glyphs" and run.data.params["trainer.max_steps"] == "4"

    again = xferlab("pretrain", "backbone=resnet_tiny", *TINY_SOURCE, cwd=tmp_path)
    assert again.returncode == 0 and str(files[0].name) in again.stdout
    assert len(experiment_runs(tmp_path, "xferlab-sources")) == 1  # reused, not rebuilt

    changed = xferlab("pretrain", "backbone=resnet_tiny", *TINY_SOURCE, "trainer.max_steps=5",
                      cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert len(list((tmp_path / "outputs" / "sources").glob("*.safetensors"))) == 2
    assert len(experiment_runs(tmp_path, "xferlab-sources")) == 2


def test_train_builds_the_source_first_and_links_the_run_to_it(tmp_path):
    args = ["train", *FAST, "backbone.pretrained=source:glyphs", SOURCE_OVERRIDES]
    out = xferlab(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    [source_run] = experiment_runs(tmp_path, "xferlab-sources")
    [run] = experiment_runs(tmp_path, "xferlab")
    meta = json.loads(next((tmp_path / "outputs" / "sources").glob("*.json")).read_text())
    assert run.data.tags["source.run_id"] == source_run.info.run_id
    assert run.data.params["source.run_id"] == source_run.info.run_id
    assert run.data.tags["source.weights_digest"] == meta["weights_digest"]
    assert run.data.params["backbone.weights_digest"] == meta["weights_digest"]
    assert "mlflow.parentRunId" not in source_run.data.tags

    out = xferlab(*args, "seed=1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(experiment_runs(tmp_path, "xferlab-sources")) == 1  # cached source reused


def test_scratch_needs_no_source(tmp_path):
    out = xferlab("train", *FAST, "freeze=scratch", "backbone.pretrained=source:glyphs",
                  SOURCE_OVERRIDES, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert experiment_runs(tmp_path, "xferlab-sources") == []
    [run] = experiment_runs(tmp_path, "xferlab")
    assert run.data.tags["weights.source"] == "none"


def test_unknown_source_exits_2(tmp_path):
    out = xferlab("train", *FAST, "backbone.pretrained=source:glyps", cwd=tmp_path)
    assert out.returncode == 2 and "names no source: use one of source:glyphs" in out.stderr
