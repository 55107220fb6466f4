"""The CLI as a user meets it: help, and bad input that exits 2 with one clear line."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import FAST, xferlab


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
