"""`xferlab report` on real SQLite MLflow stores: one written with MLflow's client (known values),
and one written by a real short multirun."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import math
import re
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.conftest import FAST, experiment_runs, store_uri, xferlab
from xferlab import cli, figures, report

FREEZES = ["linear_probe", "full", "scratch"]
FRACTIONS = ["0.01", "0.1", "1.0"]
SEEDS = [0, 1, 2]
MISSING = ("scratch", "1.0", 2)  # one cell has 2 runs: below the default --min-n 3


def acc(freeze: str, fraction: str, seed: int) -> float:
    """The test accuracy the study logs: distinct per cell and seed, so every number is checked."""
    return (0.4 + 0.1 * FREEZES.index(freeze) + 0.05 * FRACTIONS.index(fraction)
            + 0.013 * seed * (1 + FREEZES.index(freeze)) + 0.002 * (seed == 2))


def _run(client, experiment_id, *, freeze, fraction, seed, parent, backbone="resnet18",
         start=None, status="FINISHED", lr="0.001", tags=(), end=None):
    tags = {"choice.freeze": freeze, "choice.backbone": backbone, "sweep.id": parent[:8],
            "mlflow.parentRunId": parent, **dict(tags)}
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
    client.set_terminated(run, status, end_time=end)
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
    written = out_file.read_text()
    assert written.startswith(out)  # then the provenance footer (its tests: below)
    assert written.removeprefix(out).startswith("\n---\n") and "Provenance" not in out
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
    figure = report.plot(table)
    axes = figure.axes[0]
    lines = axes.get_lines()
    # human names from the label table, not config keys and option names
    assert [line.get_label() for line in lines] == ["linear probe", "full fine-tuning",
                                                    "from scratch"]
    assert axes.get_xlabel() == "labelled fraction"
    assert axes.get_ylabel() == "test accuracy (mean, 95% CI)"
    assert axes.get_legend().get_title().get_text() == "freezing strategy"
    # each series its own marker and line style: they read in greyscale
    assert len({line.get_marker() for line in lines}) == len({str(line.get_linestyle())
                                                              for line in lines}) == 3
    assert axes.get_xscale() == "log"  # 0.01 .. 1.0 spans two decades
    assert figures.caption_of(figure) == ("data: unknown · backbone: resnet18 · n = 2 to 3 per "
                                          "point (seed × data.subset_seed) · commit unknown")
    png = tmp_path / "plot.png"
    code, _, err = _cli(capsys, study, "--experiment", "study", "--rows", "freeze", "--cols",
                        "data.fraction", "--where", "backbone.name=resnet18", "--plot", str(png))
    assert code == 0, err
    with Image.open(png) as image:
        assert image.format == "PNG" and min(image.info["dpi"]) >= 199.5  # 200 dpi, as stored


@pytest.mark.parametrize("suffix", [".pdf", ".svg"])
def test_plot_to_a_pdf_or_svg_path_is_vector(capsys, study, tmp_path, suffix):
    path = tmp_path / f"plot{suffix}"
    code, _, err = _cli(capsys, study, "--experiment", "study", "--rows", "freeze", "--cols",
                        "data.fraction", "--where", "backbone.name=resnet18", "--plot", str(path))
    assert code == 0, err
    data = path.read_bytes()
    if suffix == ".pdf":
        assert data.startswith(b"%PDF") and b"/Subtype /Image" not in data  # no raster inside
    else:
        text = data.decode()
        assert "<svg" in text and "<path" in text and "<image" not in text
        assert "linear probe" in text and "backbone: resnet18" in text  # text stays text


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
    (["--experiment", "study", "--rows", "freeze", "--append"],
     "--append adds a table to a Markdown report", "--out PATH.md"),
    (["--experiment", "study", "--rows", "freeze", "--metric", "test/acc,best/val_ac"],
     "--metric 'best/val_ac' is not logged", "did you mean 'best/val_acc'"),
    (["--experiment", "study", "--rows", "freeze", "--metric", "test/acc,test/acc"],
     "names test/acc twice", "--metric test/acc,test/ece"),
    (["--experiment", "study", "--rows", "freeze", "--rank", "--metric", "test/acc,best/val_acc"],
     "--rank sets the scores beside one fine-tuned metric", "--metric test/acc"),
    (["--experiment", "study", "--rows", "freeze", "--cols", "metric"],
     "key 'metric' names a column of the report itself", "params.metric"),
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
    runs = experiment_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = {r.data.tags["choice.freeze"]: r.data.metrics for r in runs
                if r.data.tags.get("kind") != "sweep"}
    for line in lines:  # one run per cell: the mean is that run's best validation accuracy
        assert math.isclose(float(line["mean"]), children[line["freeze"]]["best/val_acc"])
        assert "best/epoch" in children[line["freeze"]]
    logged = MlflowClient(store_uri(tmp_path)).list_artifacts(parent.info.run_id, "report")
    assert "report/best-val_acc_by_freeze.md" in {a.path for a in logged}


# --- provenance: the footer `--out` writes, and the warning on mixed code versions ---

C1, C2 = "c0ffee1" + "a" * 33, "decade2" + "b" * 33  # two commits, as git.commit tags hold them
JAN_1 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms
BEGIN, END = "<!-- xferlab provenance", "<!-- /xferlab provenance -->"


def _tags(commit: str, dirty: bool = False) -> dict[str, str]:
    return {"git.commit": commit, "git.dirty": str(dirty)}


@pytest.fixture(scope="module")
def commits(tmp_path_factory):
    """Experiments whose runs carry git tags (start one minute apart from 2026-01-01, each runs
    30 s): `one_commit` (3 runs at C1; the sweep parent and a FAILED run at C2 do not count),
    `two_commits` (full at C1, scratch at C2), `dirty` (3 runs at C1, one from a dirty tree),
    `ranked` (resnet18 and vit_tiny fine-tuned at C1, scored by rank runs made at C2)."""
    folder = tmp_path_factory.mktemp("commits")
    (folder / "outputs").mkdir()
    uri = store_uri(folder)
    client = MlflowClient(uri)
    artifacts = (folder / "outputs" / "mlartifacts").as_uri()
    ids = {}

    def sweep(name, jobs):
        exp = client.create_experiment(name, artifact_location=artifacts)
        parent = client.create_run(exp, start_time=JAN_1, tags={"kind": "sweep", **_tags(C2)})
        parent = parent.info.run_id
        ids[name] = []
        for i, (freeze, seed, tags, status, *backbone) in enumerate(jobs):
            start = JAN_1 + 60_000 * i
            run = _run(client, exp, freeze=freeze, fraction="1.0", seed=seed, parent=parent,
                       start=start, end=start + 30_000, tags=tags, status=status,
                       backbone=backbone[0] if backbone else "resnet18")
            if status == "FINISHED":
                ids[name].append(run)
        client.set_terminated(parent, end_time=JAN_1 + 3_600_000)
        return exp

    sweep("one_commit", [("full", s, _tags(C1), "FINISHED") for s in SEEDS]
          + [("full", 3, _tags(C2), "FAILED")])
    sweep("two_commits", [(f, s, _tags(c), "FINISHED") for f, c in (("full", C1), ("scratch", C2))
                          for s in SEEDS])
    sweep("dirty", [("full", s, _tags(C1, dirty=s == 2), "FINISHED") for s in SEEDS])
    exp = sweep("ranked", [("full", s, _tags(C1), "FINISHED", b) for b in ("resnet18", "vit_tiny")
                           for s in SEEDS])
    for backbone, score in (("resnet18", 2.0), ("vit_tiny", 1.0)):
        run = client.create_run(exp, start_time=JAN_1 + 600_000, tags={
            "kind": "rank", "choice.backbone": backbone, **_tags(C2)}).info.run_id
        client.log_batch(run, params=[Param("backbone.name", backbone),
                                      Param("data.fraction", "1.0")],
                         metrics=[Metric("rank/logme", score, 0, 0)])
        client.set_terminated(run, end_time=JAN_1 + 630_000)
        ids["ranked"].append(run)
    return {"uri": uri, "folder": folder, "ids": ids}


def _digest(run_ids) -> str:
    """What a reader runs to check the footer: `sort ids.txt | sha256sum`, 12 digits."""
    return hashlib.sha256("".join(f"{r}\n" for r in sorted(run_ids)).encode()).hexdigest()[:12]


def _report(capsys, commits, *args, rows="freeze"):
    code = cli.main(["report", "--uri", commits["uri"], "--rows", rows, "--min-n", "1", *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out, out.err


def _footer(text: str) -> str:
    assert text.count(BEGIN) == 1 and text.endswith(END + "\n")  # one footer, last
    return text[text.index("\n---\n" + BEGIN):]


def test_out_html_is_one_page_with_the_table_the_plot_and_the_provenance(capsys, commits,
                                                                         tmp_path):
    path = tmp_path / "study.html"
    out, err = _report(capsys, commits, "--experiment", "two_commits", "--cols", "data.fraction",
                       "--out", str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.html"]  # nothing beside it
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<table>" in text
    for (freeze, head), cell in _cells(out).items():  # stdout: the same table, in Markdown
        assert f"<td>{freeze}</td>" in text and f'<td class="num">{cell}</td>' in text
        assert f'<th class="num">{head}</th>' in text
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(embedded) == 1  # the plot, though no --plot was given
    with Image.open(io.BytesIO(base64.b64decode(embedded[0]))) as image:
        assert image.format == "PNG" and min(image.info["dpi"]) >= 199.5
    assert "commits c0ffee1, decade2" in text  # the plot's caption, as its alt text
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing to fetch: one file to send
    assert "<script" not in text and "<link" not in text
    assert text.count(BEGIN) == 1 and END in text
    assert (f"<strong>Provenance.</strong> Command: <code>xferlab report --uri {commits['uri']} "
            "--rows freeze --min-n 1 --experiment two_commits") in text
    assert "at commits c0ffee1 (3), decade2 (3)" in text
    assert "Report written by xferlab at commit" in text
    assert "runs tabulated come from 2 commits" in err  # the warning, on stderr as for .md
    assert "runs tabulated come from 2 commits" in text  # and on the page


def test_plot_caption_names_the_runs_backbone_seeds_and_commits(commits):
    table = report.make(MlflowClient(commits["uri"]), "two_commits", rows=["freeze"],
                        cols=["data.fraction"], min_n=1)
    assert figures.caption_of(report.plot(table)) == (
        "data: unknown · backbone: resnet18 · n = 3 per point (seed × data.subset_seed) · "
        "commits c0ffee1, decade2")


def test_out_writes_a_footer_naming_the_command_the_runs_and_the_commits(capsys, commits,
                                                                         tmp_path):
    path = tmp_path / "report.md"
    out, err = _report(capsys, commits, "--experiment", "one_commit", "--out", str(path))
    text = path.read_text()
    assert text.startswith(out) and "Provenance" not in out  # stdout: the table only
    footer = _footer(text)
    assert text == out + footer
    command = (f"xferlab report --uri {commits['uri']} --rows freeze --min-n 1 --experiment "
               f"one_commit --out {path}")
    assert f"**Provenance.** Command: `{command}`." in footer
    runs = commits["ids"]["one_commit"]
    assert len(runs) == 3
    assert f"Runs: 3 FINISHED runs (sha256 of the sorted run ids, one per line: " \
           f"{_digest(runs)}) at commit c0ffee1 (3)," in footer
    assert "decade2" not in footer  # the sweep parent and the FAILED run are not counted
    assert "from 2026-01-01T00:00:00Z to 2026-01-01T00:02:30Z" in footer
    assert f"MLflow experiment `one_commit` in {commits['uri']}." in footer
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # pytest runs in the checkout
    written = re.search(r"Report written by xferlab at commit (\w+) \((clean|dirty) tree; "
                        r"\*\.md and \*\.png not counted\) on (\S+)Z\.", footer)
    assert written and written[1] == head
    assert abs(datetime.fromisoformat(written[3]) - datetime.now(UTC).replace(tzinfo=None)
               ) < timedelta(minutes=5)
    assert "runs tabulated" not in err  # one clean commit: no warning


def test_outside_a_git_checkout_the_footer_says_so_and_names_the_store_relative(
        capsys, commits, monkeypatch):
    monkeypatch.chdir(commits["folder"])  # a tmp folder, no git checkout above it
    _report(capsys, commits, "--experiment", "one_commit", "--out", "tables/report.md")
    footer = _footer((commits["folder"] / "tables" / "report.md").read_text())
    assert "in sqlite:///outputs/mlflow.db." in footer  # no home folder in a committed report
    assert "Report written by xferlab at no commit (not a git checkout) on " in footer


@pytest.mark.parametrize(("experiment", "where", "counted", "at", "warned"), [
    ("two_commits", [], 6, "commits c0ffee1 (3), decade2 (3)",
     "the 6 runs tabulated come from 2 commits (c0ffee1 (3), decade2 (3))"),
    ("dirty", [], 3, "commits c0ffee1 (2), c0ffee1 (dirty) (1)",
     "the 3 runs tabulated include 1 made from a dirty tree (git.dirty=True)"),
    ("two_commits", ["--where", "freeze=full"], 3, "commit c0ffee1 (3)", None),
    ("one_commit", [], 3, "commit c0ffee1 (3)", None),
], ids=["two commits", "dirty", "filtered to one commit", "one commit"])
def test_runs_at_several_commits_or_from_a_dirty_tree_are_warned_about(
        capsys, commits, tmp_path, experiment, where, counted, at, warned):
    for out in ([], ["--out", str(tmp_path / "report.md")]):  # with and without --out
        _, err = _report(capsys, commits, "--experiment", experiment, *where, *out)
        lines = [line for line in err.splitlines() if "runs tabulated" in line]
        if warned is None:
            assert lines == []
        else:
            assert len(lines) == 1 and lines[0].startswith(f"xferlab: warning: {warned}")
    footer = _footer((tmp_path / "report.md").read_text())
    tabulated = commits["ids"][experiment][:counted]  # freeze=full: the first three
    assert f"Runs: {counted} FINISHED runs (" in footer
    assert f"{_digest(tabulated)}) at {at}," in footer


def test_append_keeps_one_footer_last_listing_every_command(capsys, commits, tmp_path):
    path = tmp_path / "report.md"
    path.write_text("# A study\n\n## full\n")
    first, _ = _report(capsys, commits, "--experiment", "two_commits", "--where", "freeze=full",
                       "--out", str(path), "--append")
    with path.open("a") as file:  # as run.sh writes a section between two tables
        file.write("\n## scratch\n")
    second, _ = _report(capsys, commits, "--experiment", "two_commits", "--where",
                        "freeze=scratch", "--out", str(path), "--append")
    text = path.read_text()
    footer = _footer(text)
    body = text.removesuffix(footer)
    assert body == f"# A study\n\n## full\n\n{first}\n## scratch\n\n{second}"
    assert footer.count("Command: ") == 2 and footer.count("**Provenance.**") == 1
    full, scratch = commits["ids"]["two_commits"][:3], commits["ids"]["two_commits"][3:]
    assert footer.index("freeze=full --out") < footer.index("freeze=scratch --out")
    assert f"{_digest(full)}) at commit c0ffee1 (3)," in footer
    assert f"{_digest(scratch)}) at commit decade2 (3)," in footer
    # without --append the file is replaced: one table, one command
    _report(capsys, commits, "--experiment", "one_commit", "--out", str(path))
    assert _footer(path.read_text()).count("Command: ") == 1


def test_latex_gets_the_footer_as_comments_and_csv_none(capsys, commits, tmp_path):
    out, _ = _report(capsys, commits, "--experiment", "one_commit", "--out",
                     str(tmp_path / "t.tex"))
    comments = (tmp_path / "t.tex").read_text().removeprefix(out).splitlines()
    assert comments[0] == "% Provenance." and all(c.startswith("% ") for c in comments)
    assert any(_digest(commits["ids"]["one_commit"]) in c for c in comments)
    out, _ = _report(capsys, commits, "--experiment", "one_commit", "--out",
                     str(tmp_path / "t.csv"))
    assert (tmp_path / "t.csv").read_text() == out


def test_rank_report_footer_counts_the_rank_runs_too(capsys, commits, tmp_path):
    path = tmp_path / "rank.md"
    _, err = _report(capsys, commits, "--experiment", "ranked", "--rank", "--out", str(path),
                     rows="backbone")
    footer = _footer(path.read_text())
    assert (f"Runs: 8 FINISHED runs, 2 of them rank runs (sha256 of the sorted run ids, one per "
            f"line: {_digest(commits['ids']['ranked'])}) at commits c0ffee1 (6), decade2 (2),"
            in footer)
    assert "come from 2 commits" in err  # scores made at another commit than the fine-tuning


# --- several metrics side by side: in-distribution and OOD accuracy, calibration ---

ID, OOD, ECE = "test/acc", "eval/mnist_5k/acc", "test/ece"
NO_OOD = ("full", "1.0", 2)  # this run did not log the OOD accuracy


def shifted(metric: str, freeze: str, fraction: str, seed: int) -> float:
    """Each metric of a run: distinct per metric, cell and seed."""
    value = acc(freeze, fraction, seed)
    return {ID: value, OOD: value - 0.25 + 0.007 * seed ** 2, ECE: 0.3 - value / 4}[metric]


@pytest.fixture(scope="module")
def shift(tmp_path_factory):
    """Experiment `shift`: one sweep, freeze full|scratch x fraction 0.1|1.0 x 3 seeds, each run
    logging ID and OOD accuracy and ECE, one run without the OOD accuracy."""
    folder = tmp_path_factory.mktemp("shift")
    (folder / "outputs").mkdir()
    client = MlflowClient(store_uri(folder))
    exp = client.create_experiment("shift", artifact_location=(
        folder / "outputs" / "mlartifacts").as_uri())
    parent = client.create_run(exp, tags={"kind": "sweep"}).info.run_id
    for freeze in ("full", "scratch"):
        for fraction in ("0.1", "1.0"):
            for seed in SEEDS:
                run = _run(client, exp, freeze=freeze, fraction=fraction, seed=seed,
                           parent=parent)  # logs test/acc
                logged = [m for m in (OOD, ECE) if (m, (freeze, fraction, seed)) != (OOD, NO_OOD)]
                client.log_batch(run, metrics=[
                    Metric(m, shifted(m, freeze, fraction, seed), 0, 0) for m in logged])
    client.set_terminated(parent)
    return {"uri": store_uri(folder), "client": client, "parent": parent}


def _cells(text: str) -> dict[tuple[str, str], str]:
    """A Markdown table's cells: (first column, head) -> text."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]  # not |---|
    heads = lines[0].strip("| ").split(" | ")
    return {(cells[0], head): cell for line in lines[1:]
            for cells in [line.strip("| ").split(" | ")]
            for head, cell in zip(heads[1:], cells[1:], strict=True)}


def test_metrics_stand_side_by_side_in_each_cell(capsys, shift):
    code, out, err = _cli(capsys, shift, "--experiment", "shift", "--rows", "freeze", "--cols",
                          "data.fraction", "--metric", f"{ID},{OOD}", "--paired-vs", "scratch")
    assert code == 0, err
    table, diffs = out.split("### Δ ")
    assert table.startswith(f"### {ID}, {OOD} by freeze × data.fraction — experiment `shift`, "
                            "12 runs\n")
    heads = [f"{m} · data.fraction={x}" for x in ("0.1", "1.0") for m in (ID, OOD)]
    assert f"| freeze | {' | '.join(heads)} |" in table.splitlines()
    cells, paired = _cells(table), _cells(diffs)
    assert len(cells) == 2 * 4 and len(paired) == 4  # the baseline row has no difference
    for freeze in ("full", "scratch"):
        for fraction in ("0.1", "1.0"):
            for metric in (ID, OOD):
                seeds = [s for s in SEEDS if (metric, (freeze, fraction, s)) != (OOD, NO_OOD)]
                values = [shifted(metric, freeze, fraction, s) for s in seeds]
                cell = cells[freeze, f"{metric} · data.fraction={fraction}"]
                assert cell.startswith(f"{statistics.mean(values):.3f} ± "
                                       f"{statistics.stdev(values):.3f} [")
                assert cell.endswith(f"({len(values)})" + (" †" if len(values) < 3 else ""))
                if freeze == "full":  # paired with scratch, seed by seed
                    diff = statistics.mean(shifted(metric, "full", fraction, s)
                                           - shifted(metric, "scratch", fraction, s)
                                           for s in seeds)
                    assert paired["full", f"{metric} · data.fraction={fraction}"].startswith(
                        f"{diff:+.3f} [")
    # each metric counts its own runs: the run without the OOD accuracy still counts for ID
    assert f"1 of 12 runs did not log {OOD}: left out of its columns" in err
    assert "1 of 4 cells have fewer than 3 runs (marked †)" in err


@pytest.mark.parametrize("fmt", ["md", "latex", "csv"])
def test_each_metric_reads_as_in_a_table_of_its_own(capsys, shift, fmt):
    both = _make(shift, experiment="shift", rows=["freeze"], cols=["data.fraction"],
                 metrics=[ECE, ID], where=[], paired_vs="scratch")
    for metric in (ECE, ID):
        alone = _make(shift, experiment="shift", rows=["freeze"], cols=["data.fraction"],
                      metrics=[metric], where=[], paired_vs="scratch")
        for frame in ("cells", "paired"):
            mine = getattr(both, frame)
            mine = mine[mine["metric"] == metric].reset_index(drop=True)
            assert mine.equals(getattr(alone, frame))
    render = {"md": report.markdown, "latex": report.latex, "csv": report.csv}[fmt]
    text = render(both)
    if fmt == "csv":
        lines = list(csv.DictReader(io.StringIO(text)))
        assert [(line["freeze"], line["data.fraction"], line["metric"]) for line in lines] == [
            (f, x, m) for f in ("full", "scratch") for x in ("0.1", "1.0") for m in (ECE, ID)]
        for line in lines:
            values = [shifted(line["metric"], line["freeze"], line["data.fraction"], s)
                      for s in SEEDS]
            assert float(line["mean"]) == pytest.approx(statistics.mean(values), abs=1e-12)
            assert (line["diff_n"] == "") == (line["freeze"] == "scratch")
    elif fmt == "latex":
        for body in text.split(r"\begin{tabular}")[1:]:
            assert body.startswith("{lcccc}")  # 1 row key, 2 fractions x 2 metrics
            braces = body.replace(r"\{", "").replace(r"\}", "")
            assert braces.count("{") == braces.count("}")
            assert r"\multicolumn{2}{c}{0.1} & \multicolumn{2}{c}{1.0} \\" in body
            assert r"\cmidrule(lr){2-3} \cmidrule(lr){4-5}" in body
            assert r"freeze & test/ece & test/acc & test/ece & test/acc \\" in body
            rows = [line for line in body.splitlines() if line.startswith(("full", "scratch"))]
            assert rows and all(line.count("&") == 4 for line in rows)
    else:
        ece = [shifted(ECE, "scratch", "1.0", s) for s in SEEDS]
        assert _cells(text)["scratch", f"{ECE} · data.fraction=1.0"].startswith(
            f"{statistics.mean(ece):.3f} ± ")


def test_several_metrics_plot_a_panel_each_and_log_under_all_their_names(capsys, shift,
                                                                          tmp_path):
    table = _make(shift, experiment="shift", rows=["freeze"], cols=["data.fraction"],
                  metrics=[OOD, ID], where=[], min_n=2)
    panels = report.plot(table).axes
    assert [ax.get_ylabel() for ax in panels] == ["mnist_5k accuracy (mean, 95% CI)",
                                                  "test accuracy (mean, 95% CI)"]
    for ax, metric in zip(panels, (OOD, ID), strict=True):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["full fine-tuning", "from scratch"]
        for line, freeze in zip(lines, ("full", "scratch"), strict=True):
            expected = [statistics.mean(shifted(metric, freeze, x, s) for s in SEEDS
                                        if metric != OOD or (freeze, x, s) != NO_OOD)
                        for x in ("0.1", "1.0")]
            assert list(line.get_ydata()) == pytest.approx(expected, abs=1e-12)
    code, _, err = _cli(capsys, shift, "--experiment", "shift", "--rows", "freeze", "--cols",
                        "data.fraction", "--metric", f"{OOD},{ID}", "--plot",
                        str(tmp_path / "p.png"), "--log")
    assert code == 0, err
    logged = {a.path for a in shift["client"].list_artifacts(shift["parent"], "report")}
    stem = "report/eval-mnist_5k-acc+test-acc_by_freeze_x_data.fraction"
    assert logged == {f"{stem}.{suffix}" for suffix in ("md", "tex", "csv", "png")}
