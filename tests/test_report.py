"""`xferlab report` on real SQLite MLflow stores: one written with MLflow's client (known values),
and one written by a real short multirun."""

from __future__ import annotations

import csv
import io
import math
import statistics
import time

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.conftest import FAST, store_uri, xferlab
from xferlab import cli, report

FREEZES = ["linear_probe", "full", "scratch"]
FRACTIONS = ["0.01", "0.1", "1.0"]
SEEDS = [0, 1, 2]
MISSING = ("scratch", "1.0", 2)  # one cell has 2 runs: below the default --min-n 3


def acc(freeze: str, fraction: str, seed: int) -> float:
    """The test accuracy the study logs: distinct per cell and seed, so every number is checked."""
    return (0.4 + 0.1 * FREEZES.index(freeze) + 0.05 * FRACTIONS.index(fraction)
            + 0.013 * seed * (1 + FREEZES.index(freeze)) + 0.002 * (seed == 2))


def _run(client, experiment_id, *, freeze, fraction, seed, parent, backbone="resnet18",
         start=None, status="FINISHED", lr="0.001"):
    tags = {"choice.freeze": freeze, "choice.backbone": backbone, "sweep.id": parent[:8],
            "mlflow.parentRunId": parent}
    run = client.create_run(experiment_id, start_time=start, tags=tags).info.run_id
    params = {"freeze.strategy": freeze, "freeze.lp_epochs": str(2 + FREEZES.index(freeze)),
              "data.fraction": fraction, "seed": str(seed), "data.subset_seed": "0",
              "backbone.name": backbone, "optim.lr": lr,
              # derived per run: never confounders
              "data.train_size": str(int(1222 * float(fraction))),
              "data.subset_digest": f"{fraction}-{seed}"}
    value = acc(freeze, fraction, seed)
    metrics = {"test/acc": value, "best/val_acc": value + 0.01, "best/epoch": 3}
    client.log_batch(run, params=[Param(k, v) for k, v in params.items()],
                     metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    client.set_terminated(run, status)
    return run


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Experiment `study`: sweep A (resnet18, 3 freezes x 3 fractions x 3 seeds, one run
    missing, one FAILED) ten days ago; sweep B (vit_tiny) now. Experiment `lr_mixed`: one sweep
    whose runs differ in optim.lr."""
    folder = tmp_path_factory.mktemp("study")
    uri = store_uri(folder)
    (folder / "outputs").mkdir()
    client = MlflowClient(uri)
    artifacts = (folder / "outputs" / "mlartifacts").as_uri()  # else ./mlruns in the cwd
    exp = client.create_experiment("study", artifact_location=artifacts)
    long_ago = int((time.time() - 10 * 86400) * 1000)
    sweep_a = client.create_run(exp, start_time=long_ago, tags={"kind": "sweep"}).info.run_id
    jobs = [(f, x, s) for f in FREEZES for x in FRACTIONS for s in SEEDS if (f, x, s) != MISSING]
    for job, (freeze, fraction, seed) in enumerate(jobs):  # jobs start one after the other
        _run(client, exp, freeze=freeze, fraction=fraction, seed=seed, parent=sweep_a,
             start=long_ago + 1000 * job)
    _run(client, exp, freeze="full", fraction="0.1", seed=5, parent=sweep_a, start=long_ago,
         status="FAILED")
    client.set_terminated(sweep_a)
    sweep_b = client.create_run(exp, tags={"kind": "sweep"}).info.run_id
    for freeze in ("full", "scratch"):
        for seed in (0, 1):
            _run(client, exp, freeze=freeze, fraction="0.1", seed=seed, parent=sweep_b,
                 backbone="vit_tiny")
    client.set_terminated(sweep_b)

    mixed = client.create_experiment("lr_mixed", artifact_location=artifacts)
    sweep_c = client.create_run(mixed, tags={"kind": "sweep"}).info.run_id
    for seed, lr in ((0, "0.001"), (1, "0.01"), (0, "0.01"), (1, "0.001")):
        _run(client, mixed, freeze="full", fraction="1.0", seed=seed, parent=sweep_c, lr=lr)
    return {"uri": uri, "client": client, "sweep_a": sweep_a, "sweep_b": sweep_b,
            "folder": folder}


def _make(study, **kwargs):
    kwargs.setdefault("where", ["backbone.name=resnet18"])
    return report.make(study["client"], kwargs.pop("experiment", "study"), **kwargs)


def _cli(capsys, study, *args):
    code = cli.main(["report", "--uri", study["uri"], *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cells_equal_the_hand_computed_mean_std_and_n(study):
    table = _make(study, rows=["freeze"], cols=["data.fraction"])
    assert table.runs == 26
    assert table.row_labels == [(f,) for f in FREEZES]  # the sweep's order
    assert table.col_labels == [(f,) for f in FRACTIONS]  # numeric order
    for line in table.cells.to_dict("records"):
        values = [acc(line["freeze"], line["data.fraction"], s) for s in SEEDS
                  if (line["freeze"], line["data.fraction"], s) != MISSING]
        assert line["n"] == len(values)
        assert line["mean"] == pytest.approx(statistics.mean(values), abs=1e-12)
        assert line["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
        assert line["ci_low"] <= line["mean"] <= line["ci_high"]
    # seeded: the same store gives the same intervals
    again = _make(study, rows=["freeze"], cols=["data.fraction"])
    assert again.cells[["ci_low", "ci_high"]].equals(table.cells[["ci_low", "ci_high"]])
    assert table.warnings == ["1 of 9 cells have fewer than 3 runs (marked †)"]


def test_paired_difference_to_the_baseline_row_matches_seed_by_seed(study):
    table = _make(study, rows=["freeze"], cols=["data.fraction"], paired_vs="scratch")
    lines = table.paired.to_dict("records")
    assert {(d["freeze"], d["data.fraction"]) for d in lines} == {
        (f, x) for f in ("linear_probe", "full") for x in FRACTIONS}
    for d in lines:
        diffs = [acc(d["freeze"], d["data.fraction"], s) - acc("scratch", d["data.fraction"], s)
                 for s in SEEDS if ("scratch", d["data.fraction"], s) != MISSING]
        assert d["n"] == len(diffs)
        assert d["mean"] == pytest.approx(statistics.mean(diffs), abs=1e-12)
        assert d["ci_low"] <= d["mean"] <= d["ci_high"]


def test_markdown_to_stdout_and_out_marks_small_cells(capsys, study, tmp_path):
    out_file = tmp_path / "tables" / "report.md"
    code, out, err = _cli(capsys, study, "--experiment", "study", "--rows", "freeze", "--cols",
                          "data.fraction", "--where", "backbone.name=resnet18", "--out",
                          str(out_file))
    assert code == 0, err
    assert out_file.read_text() == out
    lines = out.splitlines()
    assert "| freeze | data.fraction=0.01 | data.fraction=0.1 | data.fraction=1.0 |" in lines
    values = [acc("linear_probe", "0.01", s) for s in SEEDS]
    mean, std = statistics.mean(values), statistics.stdev(values)
    row = next(line for line in lines if line.startswith("| linear_probe |"))
    assert row.split(" | ")[1].startswith(f"{mean:.3f} ± {std:.3f} [")
    scratch = next(line for line in lines if line.startswith("| scratch |"))
    assert scratch.endswith("(2) † |")
    assert "> **warning:** 1 of 9 cells have fewer than 3 runs (marked †)" in lines
    assert "fewer than 3 runs" in err and "confounded" not in err


def test_latex_is_a_booktabs_tabular_that_parses(capsys, study):
    code, out, _ = _cli(capsys, study, "--experiment", "study", "--rows", "freeze", "--cols",
                        "data.fraction", "--parent", study["sweep_a"], "--format", "latex",
                        "--paired-vs", "scratch")
    assert code == 0
    tabulars = out.split(r"\begin{tabular}")[1:]
    assert len(tabulars) == 2  # the table, then the paired differences
    for body in tabulars:
        assert body.startswith("{lccc}") and r"\end{tabular}" in body
        braces = body.replace(r"\{", "").replace(r"\}", "")
        assert braces.count("{") == braces.count("}")
        rows = [line for line in body.splitlines() if line.endswith(r"\\")]
        assert [r.count("&") for r in rows[1:]] == [3] * (len(rows) - 1)  # 1 label + 3 cols
        for rule in (r"\toprule", r"\cmidrule(lr){2-4}", r"\midrule", r"\bottomrule"):
            assert rule in body
        assert all(line.count("$") % 2 == 0 for line in body.splitlines())
    assert r"linear\_probe & $" in tabulars[0]
    assert r"scratch & " not in tabulars[1]  # the baseline has no difference to itself
    assert r"$^\dagger$" in tabulars[0]


def test_csv_parses_with_full_precision(capsys, study):
    code, out, _ = _cli(capsys, study, "--experiment", "study", "--rows", "freeze", "--cols",
                        "data.fraction", "--where", "backbone.name=resnet18", "--format", "csv",
                        "--paired-vs", "scratch")
    assert code == 0
    lines = list(csv.DictReader(io.StringIO(out)))
    assert len(lines) == 9
    assert list(lines[0])[:5] == ["freeze", "data.fraction", "metric", "n", "mean"]
    for line in lines:
        values = [acc(line["freeze"], line["data.fraction"], s) for s in SEEDS
                  if (line["freeze"], line["data.fraction"], s) != MISSING]
        assert float(line["mean"]) == pytest.approx(statistics.mean(values), abs=1e-12)
        assert int(line["n"]) == len(values)
        assert line["low_n"] == str(len(values) < 3)
        assert (line["diff_n"] == "") == (line["freeze"] == "scratch")


def test_plot_is_a_png_with_one_line_per_row_on_a_log_axis(capsys, study, tmp_path):
    table = _make(study, rows=["freeze"], cols=["data.fraction"])
    axes = report.plot(table).axes[0]
    assert [line.get_label() for line in axes.get_lines()] == FREEZES
    assert axes.get_xscale() == "log"  # 0.01 .. 1.0 spans two decades
    png = tmp_path / "plot.png"
    code, _, err = _cli(capsys, study, "--experiment", "study", "--rows", "freeze", "--cols",
                        "data.fraction", "--where", "backbone.name=resnet18", "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.verify()


def test_where_since_and_parent_select_runs(study):
    assert _make(study, rows=["freeze"], cols=[], where=[]).runs == 30  # sweep parents left out
    assert _make(study, rows=["freeze"], where=["backbone.name!=resnet18"]).runs == 4
    assert _make(study, rows=["freeze"], where=["data.fraction=0.10"]).runs == 9 + 4  # numbers
    recent = _make(study, rows=["freeze"], where=[], since=report.parse_since("2d"))
    assert recent.runs == 4 and recent.parents == [study["sweep_b"]]
    one = _make(study, rows=["freeze"], where=[], parent=study["sweep_a"])
    assert one.runs == 26 and one.parents == [study["sweep_a"]]
    latest = _make(study, rows=["freeze"], where=[], parent="latest")
    assert latest.runs == 4 and latest.parents == [study["sweep_b"]]


def test_differences_outside_rows_cols_and_seeds_are_warned_as_confounders(capsys, study):
    both = _make(study, rows=["freeze"], cols=["data.fraction"], where=[])
    assert any("confounded" in w and "backbone.name (resnet18, vit_tiny)" in w
               for w in both.warnings)
    # the backbone group as a column names backbone.name: no longer a confounder
    assert not any("confounded" in w for w in _make(
        study, rows=["freeze"], cols=["backbone", "data.fraction"], where=[]).warnings)
    code, _, err = _cli(capsys, study, "--experiment", "lr_mixed", "--rows", "freeze",
                        "--min-n", "1")
    assert code == 0 and "confounded comparison" in err and "optim.lr (0.001, 0.01)" in err
    code, _, err = _cli(capsys, study, "--experiment", "lr_mixed", "--rows", "freeze",
                        "--min-n", "1", "--ignore", "optim.lr")
    # an lr that cannot matter makes the runs that share a seed reruns: each counts once
    assert code == 0 and "confounded" not in err and "2 runs repeat an earlier run" in err


def test_log_writes_the_report_to_the_sweeps_parent_run(capsys, study, tmp_path):
    code, _, err = _cli(capsys, study, "--experiment", "study", "--rows", "freeze", "--cols",
                        "data.fraction", "--parent", study["sweep_a"], "--plot",
                        str(tmp_path / "p.png"), "--log")
    assert code == 0, err
    logged = {a.path for a in study["client"].list_artifacts(study["sweep_a"], "report")}
    stem = "report/test-acc_by_freeze_x_data.fraction"
    assert logged == {f"{stem}.{suffix}" for suffix in ("md", "tex", "csv", "png")}
    # two sweeps: which parent is meant must be said
    code, _, err = _cli(capsys, study, "--experiment", "study", "--rows", "freeze", "--log")
    assert code == 2 and "--log needs the runs of one sweep" in err and "--parent" in err


MISTAKES = [
    (["--experiment", "stduy", "--rows", "freeze"], "did you mean 'study'", "lr_mixed"),
    (["--experiment", "study", "--rows", "freeze", "--metric", "test/accuracy"],
     "did you mean 'test/acc'", "best/val_acc"),
    (["--experiment", "study", "--rows", "frezee"], "did you mean 'freeze'", "data.fraction"),
    (["--experiment", "study", "--rows", "freeze", "--cols", "fraction"],
     "is neither a config group", "data.fraction"),
    (["--experiment", "study", "--rows", "freeze", "--where", "backbone.name=resnet19"],
     "keeps no run", "resnet18, vit_tiny"),
    (["--experiment", "study", "--rows", "freeze", "--paired-vs", "scrach"],
     "is not a row", "linear_probe, full, scratch"),
    (["--experiment", "study", "--rows", "freeze", "--parent", "0" * 32],
     "no FINISHED runs of parent run", "sweep"),
    (["--experiment", "study", "--rows", "freeze", "--plot", "x.png"],
     "needs a numeric column key", "--cols data.fraction"),
    (["--experiment", "study", "--rows", "freeze", "--since", "last week"],
     "neither a date nor an age", "7d"),
    (["--rows", "freeze"], "required: --experiment", "xferlab report --help"),
]


@pytest.mark.parametrize(("args", "problem", "listed"), MISTAKES,
                         ids=[p for _, p, _ in MISTAKES])
def test_a_mistake_exits_2_naming_what_exists(capsys, study, args, problem, listed):
    try:
        code, _, err = _cli(capsys, study, *args)
    except SystemExit as exit_:  # argparse's own errors
        code, err = exit_.code, capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("xferlab: error: ")
    assert problem in err and listed in err


def test_report_reads_a_real_multirun_without_false_confounders(tmp_path):
    out = xferlab("train", "-m", *FAST, "freeze=linear_probe,full", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = xferlab("report", "--experiment", "xferlab", "--rows", "freeze", "--metric",
                  "best/val_acc", "--min-n", "1", "--format", "csv", "--log", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "xferlab: warning" not in out.stderr  # derived params differ, nothing else does
    lines = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [line["freeze"] for line in lines] == ["linear_probe", "full"]
    client = MlflowClient(store_uri(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("xferlab").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = {r.data.tags["choice.freeze"]: r.data.metrics for r in runs
                if r.data.tags.get("kind") != "sweep"}
    for line in lines:  # one run per cell: the mean is that run's best validation accuracy
        assert math.isclose(float(line["mean"]), children[line["freeze"]]["best/val_acc"])
        assert "best/epoch" in children[line["freeze"]]
    assert "report/best-val_acc_by_freeze.md" in {
        a.path for a in client.list_artifacts(parent.info.run_id, "report")}
