"""A short real CPU run and a real multirun, checked in a real SQLite MLflow store."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, experiment_runs, store_uri, xferlab


def test_a_run_logs_params_metrics_tags_and_artifacts(tmp_path):
    out = xferlab("train", *FAST, "trainer.epochs=2", "data.fraction=0.5", "seed=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    client, runs = MlflowClient(store_uri(tmp_path)), experiment_runs(tmp_path)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_id in out.stdout and "test/acc" in out.stdout
    params = run.data.params
    assert params["data.fraction"] == "0.5" and params["seed"] == "3"
    assert params["backbone.name"] == "test_resnet" and params["freeze.strategy"] == "full"
    assert int(params["data.train_size"]) > 0 and len(params["data.subset_digest"]) == 16
    tags = run.data.tags
    assert tags["choice.backbone"] == "resnet_tiny" and tags["choice.freeze"] == "full"
    assert "data.fraction=0.5" in tags["overrides"]
    assert tags["versions.torch"] == metadata.version("torch")  # what computed the result
    assert {"versions.python", "versions.timm", "versions.mlflow"} <= set(tags)
    assert run.info.run_name == "test_resnet·full·f0.5·s3"
    # epochs are steps 1..n, as the console counts them; final values sit at step 0 (the run
    # page shows them as bars with their values, not as one-point curves)
    for key in ("train/loss", "val/loss", "val/acc", "val/acc_best", "throughput/img_s", "lr",
                "params/trainable"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2]
    for key in ("test/acc", "test/loss", "params/total", "best/val_acc", "best/epoch"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0], key
    assert 0 <= run.data.metrics["test/acc"] <= 1
    # `full` trains every layer group at one rate: one lr series, not one per group
    assert [k for k in run.data.metrics if k.startswith("lr")] == ["lr"]
    val_acc = [m.value for m in client.get_metric_history(run.info.run_id, "val/acc")]
    best = run.data.metrics["best/epoch"]
    assert best in (1, 2) and val_acc[int(best) - 1] == max(val_acc)  # counted from 1
    assert f"{run.data.metrics['best/val_acc']:.4f} (epoch {int(best)})" in out.stdout
    # the summary links the run and its experiment's runs in the UI's model-training mode
    experiment = run.info.experiment_id
    assert (f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run.info.run_id}"
            "?workflowType=machine_learning") in out.stdout
    assert (f"http://127.0.0.1:5000/#/experiments/{experiment}/runs"
            "?workflowType=machine_learning") in out.stdout
    # the params that apply: digits logs none of glyphs' own keys, a linear head no mlp keys
    assert not {"data.charset", "data.size", "head.hidden", "freeze.k"} & set(params)
    assert params["backbone.pretrained"] == "none" and "source.run_id" not in params
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.yaml", "checkpoint", "plots",
            "per_class_metrics.csv"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/confusion_matrix.png",
                     "plots/reliability.png"}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")} == {
        "checkpoint/backbone.safetensors", "checkpoint/head.safetensors"}
    inputs = run.inputs.dataset_inputs
    assert inputs[0].dataset.digest == params["data.subset_digest"]


@pytest.mark.parametrize("strategy", ["full", "linear_probe"])
def test_same_config_and_seed_give_the_same_metrics(tmp_path, strategy):
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        out = xferlab("train", *FAST, f"freeze={strategy}", "seed=7", cwd=folder)
        assert out.returncode == 0, out.stderr
    [a], [b] = experiment_runs(tmp_path / "a"), experiment_runs(tmp_path / "b")
    for key in ("train/loss", "val/loss", "val/acc", "test/acc"):
        assert a.data.metrics[key] == b.data.metrics[key], key


def test_a_diverging_run_stops_failed_with_a_clear_message(tmp_path):
    out = xferlab("train", *FAST, "optim=sgd", "optim.lr=1e12", "sched=constant", cwd=tmp_path)
    assert out.returncode == 1
    assert "the run diverged; lower optim.lr" in out.stderr and "Traceback" not in out.stderr
    client, [run] = MlflowClient(store_uri(tmp_path)), experiment_runs(tmp_path)
    assert run.info.status == "FAILED"
    traceback = client.download_artifacts(run.info.run_id, "error/traceback.txt", str(tmp_path))
    assert "FloatingPointError" in Path(traceback).read_text()


def test_threads_auto_shares_the_cores_among_the_jobs_running_at_once(tmp_path):
    from xferlab.launch.common import thread_count

    assert [thread_count("auto", jobs, cores=2) for jobs in (1, 2, 4)] == [2, 1, 1]
    assert thread_count("auto", 2, cores=16) == 8 and thread_count(3, 2, cores=16) == 3
    assert thread_count(None, 2, cores=16) is None  # torch's own default
    # the default is auto: one job gets every core, two joblib jobs half each
    cores = os.cpu_count() or 1
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    assert xferlab("train", *FAST, cwd=tmp_path / "one").returncode == 0
    out = xferlab("train", "-m", *FAST, "seed=0,1", "hydra/launcher=joblib",
                  "hydra.launcher.n_jobs=2", cwd=tmp_path / "two")
    assert out.returncode == 0, out.stderr
    [one] = experiment_runs(tmp_path / "one")
    two = [r for r in experiment_runs(tmp_path / "two") if r.data.tags.get("kind") != "sweep"]
    assert one.data.params["trainer.threads"] == "auto" and one.data.tags["threads"] == str(cores)
    assert [r.data.tags["threads"] for r in two] == [str(max(1, cores // 2))] * 2
