"""Resume after a crash: SIGKILL or Ctrl-C mid-run, then the same run goes on to the same end."""

from __future__ import annotations

import signal
import subprocess
import time

import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from tests.conftest import FAST, experiment_runs, start_train, store_uri, xferlab

# four epochs long enough (~1 s each) that a kill right after the first checkpoint lands in
# epoch 2; `full` so that model, optimizer, BatchNorm statistics and RNG all matter
RUN = [*FAST, "trainer.epochs=4", "trainer.steps_per_epoch=80", "data.fraction=0.5", "seed=4"]


def _after_first_checkpoint(folder, proc: subprocess.Popen, sig: int) -> None:
    """Send `sig` as soon as the first epoch's checkpoint exists."""
    deadline = time.monotonic() + 180
    try:
        while not list((folder / "outputs" / "checkpoints").glob("*.pt")):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.02)
        proc.send_signal(sig)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()


def _only_run(folder):
    [run] = experiment_runs(folder)
    return MlflowClient(store_uri(folder)), run


def _steps(client, run, key="val/acc") -> list[int]:
    return [m.step for m in client.get_metric_history(run.info.run_id, key)]


def test_sigkill_in_epoch_2_then_resume_ends_as_an_uninterrupted_run(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    killed.mkdir()
    whole.mkdir()
    _after_first_checkpoint(killed, start_train(killed, *RUN), signal.SIGKILL)
    client, run = _only_run(killed)
    assert run.info.status == "RUNNING" and _steps(client, run) in ([], [1])

    # the next commands that touch the store find it, and no report counts it
    stale = xferlab("runs", "--stale", cwd=killed)
    assert stale.returncode == 0 and run.info.run_id in stale.stdout, stale.stderr
    report = xferlab("report", "--experiment", "xferlab", "--rows", "freeze", cwd=killed)
    assert report.returncode == 2 and "no FINISHED runs" in report.stderr
    assert "RUNNING but their process is gone" in report.stderr

    # as if written by an xferlab from before data.loader existed: new keys get their defaults
    [path] = (killed / "outputs" / "checkpoints").glob("*.pt")
    state = torch.load(path, weights_only=True)
    saved = OmegaConf.create(state["config"])
    del saved.data["loader"], saved.data["workers"]
    torch.save({**state, "config": OmegaConf.to_yaml(saved)}, path)

    resumed = xferlab("train", "--resume", run.info.run_id, cwd=killed)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run.info.run_id} after epoch 1" in resumed.stderr
    client, run = _only_run(killed)
    assert run.info.status == "FINISHED"
    # epochs counted from 1, as the console counts them; the final metrics at step 0
    assert _steps(client, run) == [1, 2, 3, 4] == _steps(client, run, "train/loss")
    assert _steps(client, run, "best/epoch") == [0] == _steps(client, run, "test/acc")
    assert not list((killed / "outputs" / "checkpoints").glob("*.pt"))

    assert xferlab("train", *RUN, cwd=whole).returncode == 0
    _, reference = _only_run(whole)
    for key in ("train/loss", "val/loss", "val/acc", "val/acc_best", "test/acc", "test/loss",
                "best/epoch"):
        assert run.data.metrics[key] == reference.data.metrics[key], key


def test_ctrl_c_ends_killed_and_trainer_resume_continues_the_same_run(tmp_path):
    first = start_train(tmp_path, *RUN, "trainer.resume=true")
    _after_first_checkpoint(tmp_path, first, signal.SIGINT)
    client, run = _only_run(tmp_path)
    assert run.info.status == "KILLED"

    again = xferlab("train", *RUN, "trainer.resume=true", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resuming run {run.info.run_id}" in again.stderr
    client, run = _only_run(tmp_path)  # still one run
    assert run.info.status == "FINISHED" and _steps(client, run) == [1, 2, 3, 4]

    done = xferlab("train", *RUN, "trainer.resume=true", cwd=tmp_path)  # a resumed sweep's job
    assert done.returncode == 0 and f"already FINISHED as run {run.info.run_id}" in done.stderr
    _only_run(tmp_path)


def test_resume_errors_are_one_line(tmp_path):
    no_store = xferlab("train", "--resume", "0123456789abcdef", cwd=tmp_path)
    assert no_store.returncode == 2 and "there is no MLflow store" in no_store.stderr
    assert not (tmp_path / "outputs").exists()
    assert xferlab("train", *FAST, "trainer.checkpoint_every=0", cwd=tmp_path).returncode == 0
    _, run = _only_run(tmp_path)
    unknown = xferlab("train", "--resume", "0123456789abcdef", cwd=tmp_path)
    assert unknown.returncode == 2 and "no such run" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    finished = xferlab("train", "--resume", run.info.run_id, cwd=tmp_path)
    assert finished.returncode == 2 and "is FINISHED: nothing to resume" in finished.stderr
    extra = xferlab("train", "--resume", run.info.run_id, "optim.lr=1", cwd=tmp_path)
    assert extra.returncode == 2 and "with its own config" in extra.stderr


def test_a_checkpoint_of_a_frozen_phase_leaves_the_backbone_out_and_resumes_exactly():
    import copy

    import torch

    from xferlab import engine, freezing, heads, optim
    from xferlab.backbones import create_backbone

    def build():
        torch.manual_seed(0)
        backbone, _ = create_backbone("test_resnet", pretrained="none", in_chans=1,
                                      image_size=16, drop_path_rate=0.0)
        model = heads.TransferModel(backbone, torch.nn.Linear(backbone.num_features, 3))
        groups = freezing.layer_groups(model)
        return model, groups, optim.build_optimizer(groups, name="adamw", lr=1e-2,
                                                    weight_decay=0.05, momentum=0.9)

    def plan_for(epoch, n):  # lp_ft: head alone for 2 epochs, then everything
        return freezing.make_plan("lp_ft", n, epoch, k=0, every=1, lp_epochs=2, ft_lr_scale=0.5,
                                  decay=1, norms=False)

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (48, 1, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    loop = engine.Loop(mean=(0.5,), std=(0.25,), device=torch.device("cpu"), batch_size=16,
                       progress=False)
    saved = []

    def fit(model, groups, opt, resume=None):
        return engine.fit(model, groups=groups, plan_for=lambda e: plan_for(e, len(groups)),
                          optimizer=opt, train=(x, y), val=(x, y), loop=loop, epochs=4,
                          max_steps=None, steps_per_epoch=None, base_lr=1e-2,
                          schedule=engine.lr_schedule("cosine", 0.0, min_lr_ratio=0.0), seed=3,
                          on_epoch=lambda e, m: None,
                          checkpoint=lambda state: saved.append(copy.deepcopy(state)),
                          checkpoint_every=1, resume=resume)

    model, groups, opt = build()
    whole = fit(model, groups, opt)
    after_epoch_2 = saved[1]
    assert not any(k.startswith("backbone.") and "running" not in k and "num_batches" not in k
                   for k in after_epoch_2["model"])  # frozen: only head and buffers
    resumed_model, groups, opt = build()
    resumed = fit(resumed_model, groups, opt, resume=after_epoch_2)
    assert [e["val/loss"] for e in resumed.epochs] == [e["val/loss"] for e in whole.epochs]
    for key, value in model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
