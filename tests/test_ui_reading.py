"""What the MLflow UI reads from a run: model-training experiments, sweep parents named after
their grid, only the params that apply, epochs counted from 1, one lr series per distinct rate.
Read back through MLflow's API from real stores."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, experiment_runs, store_uri, xferlab
from xferlab import config, engine, freezing, heads, optim, tracking
from xferlab.engine._lr import lr_series
from xferlab.launch import compose

MODEL_TRAINING = ("mlflow.experimentKind", "custom_model_development")


def test_a_2x2_sweep_reads_well_in_the_ui(tmp_path):
    from xferlab.backbones import create_backbone, save_backbone

    backbone, _ = create_backbone("test_resnet", pretrained="none", in_chans=1, image_size=32)
    save_backbone(backbone, tmp_path / "resnet.safetensors")
    out = xferlab("train", "-m", *FAST, "trainer.epochs=2", "freeze=scratch,linear_probe",
                  "seed=0,1", f"backbone.pretrained=file:{tmp_path / 'resnet.safetensors'}",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    client = MlflowClient(store_uri(tmp_path))

    # the experiment opens on its runs table: MLflow's model-training mark
    experiment = client.get_experiment_by_name("xferlab")
    assert experiment.tags[MODEL_TRAINING[0]] == MODEL_TRAINING[1]

    # the parent is named after its grid and holds the swept keys with their values
    runs = experiment_runs(tmp_path)
    [parent] = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    assert parent.info.run_name == "xferlab: freeze × seed, 4 jobs"
    assert parent.data.params == {"freeze": "scratch, linear_probe", "seed": "0, 1"}
    assert parent.data.tags["sweep.keys"] == "freeze,seed"
    children = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert parent.info.status == "FINISHED" and {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {r.data.tags["sweep.id"] for r in children} == {parent.data.tags["sweep.id"]}
    assert {(r.data.params["freeze.strategy"], r.data.params["seed"]) for r in children} == {
        ("scratch", "0"), ("scratch", "1"), ("linear_probe", "0"), ("linear_probe", "1")}
    by_strategy = {s: [r for r in children if r.data.params["freeze.strategy"] == s]
                   for s in ("scratch", "linear_probe")}
    sweep_link = (f"/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}"
                  "?workflowType=machine_learning")
    assert out.stdout.count(sweep_link) == 4  # each job's summary links its sweep

    # only the params that apply: scratch starts from random weights, so no pretrained source;
    # digits has none of glyphs' own keys
    for run in by_strategy["scratch"]:
        assert not {"backbone.pretrained", "backbone.source_overrides",
                    "backbone.weights_digest"} & set(run.data.params)
    for run in by_strategy["linear_probe"]:
        assert run.data.params["backbone.pretrained"].startswith("file:")
        assert len(run.data.params["backbone.weights_digest"]) == 16
    for run in children:
        assert not {"data.charset", "data.size", "freeze.k", "head.hidden"} & set(run.data.params)

    for run in children:
        history = client.get_metric_history(run.info.run_id, "val/acc")
        # epochs counted from 1, and best/epoch names the best of them
        assert [m.step for m in history] == [1, 2]
        best = run.data.metrics["best/epoch"]
        assert best in (1, 2) and history[int(best) - 1].value == run.data.metrics["best/val_acc"]
        # the final values at step 0: bars with their values on the run page
        assert [m.step for m in client.get_metric_history(run.info.run_id, "test/acc")] == [0]
        # scratch trains every group at one rate, the probe only the head: `lr` alone each
        assert [k for k in run.data.metrics if k.startswith("lr")] == ["lr"]

    # the sweep's report lands on its parent; runs that lack keys that do not apply to them
    # (scratch's pretrained source) are no confounded comparison
    report = xferlab("report", "--experiment", "xferlab", "--rows", "freeze", "--parent",
                     "latest", "--min-n", "1", "--log", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "confounded" not in report.stderr
    logged = [a.path for a in client.list_artifacts(parent.info.run_id, "report")]
    assert "report/test-acc_by_freeze.md" in logged


def test_an_experiment_made_elsewhere_is_marked_when_xferlab_first_uses_it(project):
    uri = store_uri(project)
    (project / "outputs").mkdir()
    made = MlflowClient(uri).create_experiment("by_hand")
    assert MODEL_TRAINING[0] not in MlflowClient(uri).get_experiment(made).tags
    assert tracking.setup(uri, "by_hand") == made
    assert MlflowClient(uri).get_experiment(made).tags[MODEL_TRAINING[0]] == MODEL_TRAINING[1]
    new = tracking.setup(uri, "new")
    assert MlflowClient(uri).get_experiment(new).tags[MODEL_TRAINING[0]] == MODEL_TRAINING[1]


def test_ui_links_open_in_model_training_mode():
    assert tracking.ui_url("sqlite:///x/mlflow.db") == "http://127.0.0.1:5000"
    assert tracking.ui_url("sqlite:///x/mlflow.db", "0.0.0.0", 8080) == "http://127.0.0.1:8080"
    assert tracking.ui_url("https://user:secret@mlflow.lab:8443/ml/") == (
        "https://mlflow.lab:8443/ml")  # the server's own UI; no credentials in a printed link
    assert tracking.links("http://h:5000", "3", "abc", "par") == {
        "run": "http://h:5000/#/experiments/3/runs/abc?workflowType=machine_learning",
        "sweep": "http://h:5000/#/experiments/3/runs/par?workflowType=machine_learning",
        "runs": "http://h:5000/#/experiments/3/runs?workflowType=machine_learning"}
    assert "sweep" not in tracking.links("http://h:5000", "3", "abc")


@pytest.mark.parametrize(("strategy", "series"), [
    ("full", {"lr"}), ("scratch", {"lr"}), ("linear_probe", {"lr"}), ("last_k", {"lr"}),
    ("gradual", {"lr"}), ("bitfit", {"lr"}),
    ("lp_ft", {"lr/backbone", "lr/head"}),
    ("layer_decay", {"lr/stem", "lr/blocks.0", "lr/blocks.1", "lr/blocks.2", "lr/head"}),
])
def test_one_lr_series_per_distinct_rate(strategy, series):
    names = ["stem", "blocks.0", "blocks.1", "blocks.2", "head"]
    scales = [freezing.make_plan(strategy, len(names), epoch).lr_scale for epoch in range(6)]
    assert set(lr_series(names, scales)) == series


def test_lp_ft_logs_the_backbone_and_the_head_rate_and_never_a_frozen_group():
    torch.manual_seed(0)
    from xferlab.backbones import create_backbone

    backbone, _ = create_backbone("test_resnet", pretrained="none", in_chans=1, image_size=16)
    model = heads.TransferModel(backbone, torch.nn.Linear(backbone.num_features, 3))
    groups = freezing.layer_groups(model)
    opt = optim.build_optimizer(groups, name="adamw", lr=1e-2, weight_decay=0.0, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (32, 1, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (32,), generator=g)
    seen: dict[int, dict[str, float]] = {}
    history = engine.fit(
        model, groups=groups, optimizer=opt, train=(x, y), val=(x, y), epochs=4, max_steps=None,
        plan_for=lambda e: freezing.make_plan("lp_ft", len(groups), e, lp_epochs=2,
                                              ft_lr_scale=0.5),
        loop=engine.Loop(mean=(0.5,), std=(0.25,), device=torch.device("cpu"), batch_size=16,
                         progress=False),
        steps_per_epoch=None, base_lr=1e-2, schedule=engine.lr_schedule("constant", 0.0),
        seed=0, on_epoch=lambda epoch, metrics: seen.update({epoch: metrics}))
    lrs = [{k: v for k, v in m.items() if k.startswith("lr")} for _, m in sorted(seen.items())]
    assert lrs == [{"lr/backbone": 0.0, "lr/head": 1e-2}] * 2 + [
        {"lr/backbone": 5e-3, "lr/head": 1e-2}] * 2
    assert 1 <= history.best_epoch <= 4  # counted from 1
    assert history.epochs[history.best_epoch - 1]["val/acc"] == history.best_val_acc


def test_a_run_leaves_out_the_keys_of_the_options_it_did_not_choose():
    digits = config.unused_keys(compose.compose(["data=digits", "head=linear"]))
    assert {"data.charset", "data.size", "data.elpv_task", "head.hidden", "freeze.k"} <= digits
    glyphs = config.unused_keys(compose.compose(["data=glyphs", "head=mlp", "freeze=last_k"]))
    assert not {"data.charset", "data.size", "head.hidden", "freeze.k"} & glyphs
    # keys that belong to no option (a section's common keys) are always logged
    assert not {"data.fraction", "data.name", "optim.lr", "freeze.strategy"} & digits
