"""What `xferlab train` shows in a terminal: a line on each step that takes seconds, no `nan`
before the first step, and why an epoch on cached features is fast."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

from omegaconf import OmegaConf

from tests.conftest import FAST
from xferlab import tracking
from xferlab.launch import common
from xferlab.launch.compose import compose_with_choices
from xferlab.recipes import train

# what a run says while it loads, builds and computes
STATUS = ("xferlab: loading", "xferlab: building", "xferlab: training", "xferlab: computing",
          "xferlab: evaluating")


def in_a_terminal(args: list[str], cwd, timeout: float = 300) -> tuple[int, str]:
    """Run a command with stdout and stderr on a pseudo-terminal, as a user's shell does (rich
    draws its progress bar only there); its exit code and its output, escape codes removed."""
    parent, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_NUM_THREADS="1", COLUMNS="200", TERM="xterm-256color")  # not a dumb one
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=child, stderr=child, cwd=cwd,
                            env=env)
    os.close(child)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([parent], [], [], 1)[0]:
                try:
                    chunk = os.read(parent, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(parent)
        if proc.poll() is None:
            proc.kill()
    text = output.decode(errors="replace").replace("\r\n", "\n")
    return proc.wait(), re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_a_linear_probe_says_what_it_builds_and_computes_in_a_terminal(tmp_path):
    overrides = [o for o in FAST if o != "trainer.progress=false"]
    code, out = in_a_terminal([sys.executable, "-m", "xferlab.cli", "train", *overrides,
                               "freeze=linear_probe"], cwd=tmp_path)
    assert code == 0, out
    lines = [line.split("\r")[-1] for line in out.splitlines()]  # what the bar left last
    said = [line for line in lines if line.startswith("xferlab: ")]
    assert said[:4] == ["xferlab: importing torch and timm", "xferlab: loading digits",
                        "xferlab: building test_resnet with random weights",
                        "xferlab: training 1 epoch, 38 steps of 32 images"]
    # a fresh cache: the training and validation features, then test's for the evaluation
    computing = [i for i, line in enumerate(said) if line.startswith("xferlab: computing")]
    evaluating = said.index("xferlab: evaluating the best weights on val and test (575 images)")
    assert len(computing) == 3 and computing[1] < evaluating < computing[2]
    # the progress bar was drawn, with a dash for the loss until the first step gave one
    assert "loss - " in out and "nan" not in out
    epoch = next(line for line in lines if line.startswith("epoch 1/1  train/loss"))
    assert re.search(r"  \d+ img/s \(cached features\)$", epoch), epoch


def test_progress_false_keeps_a_run_quiet(project, capsys):
    cfg, choices = compose_with_choices([*FAST, "freeze=linear_probe"])  # progress=false
    train.train(cfg, tracking.Launch(choices=choices, overrides=FAST))
    out = capsys.readouterr()
    assert not [line for line in out.err.splitlines() if line.startswith(STATUS)]
    assert "epoch 1/1" not in out.out and "test/acc" in out.out  # the summary stays


def test_the_jobs_of_a_sweep_and_the_trials_of_a_search_name_themselves(capsys):
    cfg = OmegaConf.create({"trainer": {"progress": True}})
    for launch in (tracking.Launch(), tracking.Launch(sweep_tags={"sweep.job": "3"}),
                   tracking.Launch(prefix="t7·")):
        say = common.status(cfg, launch)
        assert say is not None
        say("loading digits")
    assert capsys.readouterr().err.splitlines() == [
        "xferlab: loading digits", "xferlab #3: loading digits", "xferlab t7: loading digits"]
