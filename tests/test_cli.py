"""The CLI as a user meets it: help, and bad input that exits 2 with one clear line."""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, experiment_runs, store_uri, xferlab


def test_help_lists_commands(tmp_path):
    out = xferlab("--help", cwd=tmp_path)
    assert out.returncode == 0 and "train" in out.stdout and "ui" in out.stdout


def test_train_help_is_hydras_with_config_groups(tmp_path):
    out = xferlab("train", "--help", cwd=tmp_path)
    assert out.returncode == 0
    for group in ("backbone:", "freeze:", "data:", "optim:", "head:"):
        assert group in out.stdout


def test_unknown_command_suggests_a_close_one(tmp_path):
    out = xferlab("trian", cwd=tmp_path)
    assert out.returncode == 2 and "did you mean 'train'" in out.stderr


# The table of bad inputs is tests/test_bad_inputs.py; these are the cases it does not hold.
BAD_INPUTS = [
    (["optim.lr=abc"], "optim.lr='abc' is invalid"),
    (["-m", "seed=0,1", "data.fraction=0.5,2"], "data.fraction=2.0 is out of range"),
    (['backbone.source_overrides=["trainer.max_step=5"]', "backbone.pretrained=source:glyphs"],
     "trainer.max_step is not a config key (did you mean 'trainer.max_steps'?)"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS,
                         ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_no_run(tmp_path, overrides, message):
    out = xferlab("train", *FAST, *overrides, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert all(line.startswith("xferlab: error: ") for line in out.stderr.strip().splitlines())
    db = tmp_path / "outputs" / "mlflow.db"
    if db.exists():  # nothing may be left RUNNING (or logged at all)
        assert sqlite3.connect(db).execute("select count(*) from runs").fetchone()[0] == 0


# Every command's help, as `xferlab <command> --help` (the first: `xferlab --help`).
HELP = [[], ["train"], ["pretrain"], ["tune"], ["rank"], ["report"], ["ui"], ["runs"]]


def test_every_help_answers_without_importing_heavy_libraries(tmp_path):
    code = ("import sys\nfrom xferlab import cli\n"
            f"for command in {HELP!r}:\n"
            "    try:\n        cli.main([*command, '--help'])\n"
            "    except SystemExit:  # argparse's --help\n        pass\n"
            "print(sorted(m for m in ('torch', 'timm', 'mlflow', 'optuna', 'matplotlib')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    for command in ("xferlab tune", "xferlab rank", "xferlab report", "xferlab runs"):
        assert f"usage: {command}" in out.stdout


@pytest.mark.parametrize("command", HELP, ids=lambda c: " ".join(["xferlab", *c]))
def test_help_into_a_closed_pipe_exits_0_quietly(tmp_path, command):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: every write fails (EPIPE)
    try:
        out = subprocess.run([sys.executable, "-m", "xferlab.cli", *command, "--help"],
                             stdout=write, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                             timeout=120, check=False)
    finally:
        os.close(write)
    assert (out.returncode, out.stderr) == (0, "")


def test_a_run_whose_stdout_is_closed_ends_killed_with_one_line(project):
    """`xferlab train | head -1`: the reader went away, so the user stopped the run; it ends
    KILLED (not FAILED with a traceback, as if xferlab had a bug) and says so on stderr."""
    read, write = os.pipe()
    os.close(read)
    try:
        out = subprocess.run([sys.executable, "-m", "xferlab.cli", "train", *FAST,
                              "trainer.progress=true", "trainer.epochs=2"], stdout=write,
                             stderr=subprocess.PIPE, text=True, cwd=project, timeout=300,
                             check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        os.close(write)
    [run] = experiment_runs(project)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert run.info.status == "KILLED"
    assert out.stderr.splitlines()[-1] == (
        "xferlab: stdout was closed by its reader: stopped; a run this cut is KILLED")
    artifacts = MlflowClient(store_uri(project)).list_artifacts(run.info.run_id, "error")
    assert artifacts == []


def test_train_help_piped_into_head_exits_0_without_a_traceback(tmp_path):
    command = f"{shlex.quote(sys.executable)} -m xferlab.cli train --help | head -1"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout == "train is powered by Hydra.\n"
    assert out.stderr == ""


@pytest.mark.parametrize("args", [["--help"], ["--help", "freeze=lp_ft", "data=digits"]],
                         ids=" ".join)
def test_train_help_is_the_page_hydra_writes(project, capsys, args):
    from hydra.core.global_hydra import GlobalHydra

    from xferlab.launch import compose, jobs
    from xferlab.recipes import train

    try:  # Hydra's own --help: seconds, where help_page takes a fraction of one
        assert jobs.run_hydra(jobs.hydra_main(train.job), args) == 0
    finally:
        GlobalHydra.instance().clear()
    assert compose.help_page("train", args) + "\n" == capsys.readouterr().out
