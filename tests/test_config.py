"""Every option of every config group composes; bad values fail with the key, value and fix."""

from __future__ import annotations

import pytest

from xferlab.config import ConfigError, validate
from xferlab.launch.compose import CONF_DIR, compose, job_overrides, options

# conf/hydra/launcher/ holds launcher configs, composed by tests/test_scaling.py (plugins needed)
GROUPS = sorted(p.name for p in CONF_DIR.iterdir()
                if p.is_dir() and p.name not in ("search", "hydra"))
ALL_OPTIONS = [(g, o) for g in GROUPS for o in options(g)]


def test_options_are_found_recursively_and_counted():
    yaml_files = [p for g in GROUPS for p in (CONF_DIR / g).rglob("*.yaml")]
    assert len(ALL_OPTIONS) == len(yaml_files)
    assert {"backbone", "head", "freeze", "data", "optim", "sched", "trainer", "tracking",
            "experiment"} <= set(GROUPS)
    assert len(options("freeze")) == 10


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_option_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    if option == "image_folder":
        overrides.append("data.root=/some/folder")
    cfg = compose(overrides)
    assert validate(cfg) == []


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_option_file_opens_with_a_one_line_comment(group, option):
    lines = (CONF_DIR / group / f"{option}.yaml").read_text().splitlines()
    first = next(line for line in lines if not line.startswith("# @package"))
    assert first.startswith("# ") and "xferlab" in first, first


@pytest.mark.parametrize(("overrides", "expected"), [
    (["freeze=linear_prob"], "freeze='linear_prob' is not an option of 'freeze'"),
    (["freeze=linear_prob"], "did you mean 'linear_probe'"),
    (["optim.lrr=1"], "optim.lrr is not a config key (did you mean 'optim.lr'?)"),
    (["optim.lr=abc"], "optim.lr='abc' is invalid"),
    (["trainer.epochs=ten"], "trainer.epochs='ten' is invalid"),
])
def test_composition_errors_name_key_value_and_fix(overrides, expected):
    with pytest.raises(ConfigError) as err:
        compose(overrides)
    assert expected in str(err.value)


def test_all_bad_overrides_are_listed_at_once():
    with pytest.raises(ConfigError) as err:
        compose(["optim.lrr=1", "trainer.epochs=ten", "head=mpl"])
    # the group typo is reported first; key problems are found once the groups are valid
    assert len(err.value.problems) == 1 and "head='mpl'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        compose(["optim.lrr=1", "trainer.epochs=ten"])
    assert len(err.value.problems) == 2


@pytest.mark.parametrize(("overrides", "expected"), [
    (["data.fraction=0"], "data.fraction=0.0 is out of range"),
    (["data.fraction=1.5"], "data.fraction=1.5 is out of range"),
    (["data.fraction=0.5", "data.shots=5"], "choose one"),
    (["optim.lr=-1"], "optim.lr=-1.0 is out of range"),
    (["freeze.strategy=frozen"], "freeze.strategy='frozen' is not one of"),
    (["backbone.pretrained=fil:/x"], "did you mean 'file'"),
    (["data=image_folder"], "data.root is not set"),
    (["trainer.threads=0"], "trainer.threads=0 is out of range: use auto, a number"),
    (["trainer.threads=many"], "trainer.threads='many' is out of range"),
])
def test_validate_reports_ranges_and_choices(overrides, expected):
    problems = validate(compose(overrides))
    assert any(expected in p for p in problems), problems


def test_multirun_expands_to_one_override_list_per_job():
    jobs = job_overrides(["freeze=full,linear_probe", "seed=0,1", "trainer.epochs=1"], True)
    assert len(jobs) == 4
    assert ["freeze=linear_probe", "seed=1", "trainer.epochs=1"] in jobs
    assert job_overrides(["seed=3"], False) == [["seed=3"]]
