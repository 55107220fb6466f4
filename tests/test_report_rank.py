"""`xferlab report --rank` on a real SQLite MLflow store written with MLflow's client: rank scores
beside fine-tuned accuracies, Kendall τ and weighted τ between them, and the time each took."""

from __future__ import annotations

import csv
import io

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy import stats

from tests.conftest import store_uri, xferlab
from xferlab import cli

# candidate (backbone group, backbone.pretrained) -> fine-tuned test/acc at data.fraction 0.1, 1.0
ACC = {("resnet_tiny", "source:glyphs"): (0.90, 0.95),
       ("resnet_tiny", "source:letters"): (0.80, 0.85),
       ("resnet_tiny", "none"): (0.60, 0.80), ("vit_tiny", "none"): (0.70, 0.75),
       ("vit_tiny", "timm"): (0.50, 0.55)}  # the last one was never ranked
FRACTIONS = ("0.1", "1.0")
SEEDS = {0: -0.01, 1: +0.01}  # symmetric: a cell's mean is the ACC above
TUNE_S = {"0.1": 60.0, "1.0": 120.0}  # the seconds one fine-tuning run takes
# rank scores of the first four candidates, against their accuracies at data.fraction=0.1:
# logme in the same order (τ = 1), knn reversed (τ = -1), linear_probe mixed (below)
SCORES = {"logme": (3.0, 2.0, 0.5, 1.0), "knn": (0.1, 0.2, 0.4, 0.3),
          "linear_probe": (0.9, 0.6, 0.7, 0.8)}
SCORE_S = {"features": 2.0, "logme": 0.5, "knn": 0.25, "linear_probe": 1.5}
ROWS = "backbone,backbone.pretrained"


def _log(client, experiment_id, *, tags, params, metrics, start, seconds):
    run = client.create_run(experiment_id, start_time=start, tags=tags).info.run_id
    client.log_batch(run, params=[Param(k, str(v)) for k, v in params.items()],
                     metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    client.set_terminated(run, "FINISHED", end_time=start + int(seconds * 1000))


def _finetuned(client, experiment_id, candidate, fraction, seed, start, value):
    backbone, pretrained = candidate
    _log(client, experiment_id, start=start, seconds=TUNE_S[fraction],
         tags={"choice.backbone": backbone, "choice.freeze": "full"},
         params={"backbone.name": backbone, "backbone.pretrained": pretrained,
                 "data.name": "digits", "data.fraction": fraction, "seed": seed,
                 "data.subset_seed": 0, "freeze.strategy": "full",
                 "data.train_size": int(1222 * float(fraction))},
         metrics={"test/acc": value, "val/acc_best": value + 0.01})


def _ranked(client, experiment_id, candidate, fraction, start, scores):
    backbone, pretrained = candidate
    _log(client, experiment_id, start=start, seconds=5,
         tags={"choice.backbone": backbone, "choice.freeze": "full", "kind": "rank"},
         params={"backbone.name": backbone, "backbone.pretrained": pretrained,
                 "data.name": "digits", "data.fraction": fraction, "seed": 0,
                 "data.subset_seed": 0, "freeze.strategy": "full",
                 "data.train_size": int(1222 * float(fraction))},
         metrics={**{f"rank/{name}": value for name, value in scores.items()},
                  **{f"time/{name}_s": s for name, s in SCORE_S.items()}})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Experiment `study`: 5 candidates x 2 fractions x 2 seeds fine-tuned, 4 of them ranked at
    data.fraction=1.0. `untuned`: fine-tuned runs only. `per_fraction`: 3 candidates fine-tuned
    and ranked at both fractions, and a 4th ranked only."""
    folder = tmp_path_factory.mktemp("rank")
    (folder / "outputs").mkdir()
    client = MlflowClient(store_uri(folder))
    artifacts = (folder / "outputs" / "mlartifacts").as_uri()
    study, untuned, per_fraction = (client.create_experiment(name, artifact_location=artifacts)
                                    for name in ("study", "untuned", "per_fraction"))
    start = 1_700_000_000_000
    for i, (candidate, accs) in enumerate(ACC.items()):
        for fraction, value in zip(FRACTIONS, accs, strict=True):
            for seed, noise in SEEDS.items():
                start += 1000_000
                _finetuned(client, study, candidate, fraction, seed, start, value + noise)
                if i < 2:
                    _finetuned(client, untuned, candidate, fraction, seed, start, value + noise)
        if i < 4:
            _ranked(client, study, candidate, "1.0", start,
                    {name: values[i] for name, values in SCORES.items()})
    candidates = list(ACC)[:3]
    for i, candidate in enumerate(candidates):
        for j, fraction in enumerate(FRACTIONS):
            start += 1000_000
            _finetuned(client, per_fraction, candidate, fraction, 0, start, ACC[candidate][j])
            # LogME agrees with the fine-tuned order at 0.1 and reverses it at 1.0
            logme = 3.0 - i if fraction == "0.1" else float(i)
            _ranked(client, per_fraction, candidate, fraction, start, {"logme": logme})
    _ranked(client, per_fraction, list(ACC)[3], "0.1", start + 1, {"logme": 9.0})
    return folder


def _table(text: str, title: str) -> list[list[str]]:
    """The cells of the Markdown table under the heading that starts with `title`."""
    lines = text.split(title, 1)[1].splitlines()
    rows = [line for line in lines[lines.index(next(x for x in lines if x.startswith("|"))):]]
    rows = rows[:next((i for i, line in enumerate(rows) if not line.startswith("|")), len(rows))]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in rows]


def test_rank_report_sets_scores_beside_fine_tuned_results_with_tau(store):
    out_file = store / "reports" / "rank.md"
    out = xferlab("report", "--experiment", "study", "--rows", ROWS, "--cols", "data.fraction",
                  "--rank", "--min-n", "2", "--out", str(out_file), cwd=store)
    assert out.returncode == 0, out.stderr
    written = out_file.read_text()  # the table, then its provenance footer
    assert written.startswith(out.stdout) and "**Provenance.**" in written[len(out.stdout):]

    table = _table(out.stdout, "### test/acc after fine-tuning")
    assert table[0] == ["backbone", "backbone.pretrained", "test/acc · data.fraction=0.1",
                        "test/acc · data.fraction=1.0", "rank/logme", "rank/knn",
                        "rank/linear_probe"]
    rows = {tuple(r[:2]): r[2:] for r in table[2:]}
    assert list(rows) == list(ACC)  # every candidate, in the order of the runs
    assert rows[("resnet_tiny", "source:glyphs")] == [
        "0.900 ± 0.014 (2)", "0.950 ± 0.014 (2)", "3.000", "0.100", "0.900"]
    assert rows[("vit_tiny", "timm")][2:] == ["—", "—", "—"]  # never ranked

    taus = _table(out.stdout, "### Kendall τ")
    assert taus[0] == ["data.fraction", "score", "Kendall τ", "weighted τ", "candidates",
                       "scoring s", "fine-tuning s"]
    found = {(r[0], r[1]): r[2:] for r in taus[2:]}
    assert len(found) == 6  # 2 fractions x 3 scores
    assert found[("0.1", "rank/logme")] == ["1.00", "1.00", "4", "2.50", "60.0"]
    assert found[("0.1", "rank/knn")] == ["-1.00", "-1.00", "4", "2.25", "60.0"]
    # linear_probe (0.9, 0.6, 0.7, 0.8) vs accuracy (0.9, 0.8, 0.6, 0.7): of the 6 pairs, 4
    # concordant and 2 discordant ((0.8, 0.6) vs (0.6, 0.7), (0.8, 0.7) vs (0.6, 0.8))
    weighted = stats.weightedtau(SCORES["linear_probe"], [a for a, _ in list(ACC.values())[:4]])
    assert found[("0.1", "rank/linear_probe")] == [
        "0.33", f"{weighted.statistic:.2f}", "4", "3.50", "60.0"]
    # at 1.0 only the last two candidates swap against LogME: (5 - 1) / 6
    kendall, _, n, _, tune_s = found[("1.0", "rank/logme")]
    assert (kendall, n, tune_s) == ("0.67", "4", "120.0")

    missing = ("candidate backbone=vit_tiny, backbone.pretrained=timm has no rank run: left out "
               "of τ")
    broadcast = ("the rank runs were all done at data.fraction=1.0: their scores stand beside "
                 "every data.fraction column")
    for problem in (missing, broadcast):
        assert f"> **warning:** {problem}" in out.stdout
        assert f"xferlab: warning: {problem}" in out.stderr
    assert "confounded" not in out.stderr


def test_scores_are_matched_on_the_columns_the_rank_runs_vary_in(store):
    out = xferlab("report", "--experiment", "per_fraction", "--rows", ROWS, "--cols",
                  "data.fraction", "--rank", "--min-n", "1", cwd=store)
    assert out.returncode == 0, out.stderr
    table = _table(out.stdout, "### test/acc after fine-tuning")
    assert table[0][2:] == ["test/acc · data.fraction=0.1", "rank/logme · data.fraction=0.1",
                            "test/acc · data.fraction=1.0", "rank/logme · data.fraction=1.0"]
    rows = {tuple(r[:2]): r[2:] for r in table[2:]}
    assert rows[("resnet_tiny", "source:glyphs")] == ["0.900 (1)", "3.000", "0.950 (1)",
                                                      "0.000"]
    assert rows[("vit_tiny", "none")] == ["—", "9.000", "—", "—"]  # ranked, never fine-tuned
    found = {(r[0], r[1]): r[2:] for r in _table(out.stdout, "### Kendall τ")[2:]}
    assert found[("0.1", "rank/logme")][:3] == ["1.00", "1.00", "3"]
    assert found[("1.0", "rank/logme")][:3] == ["-1.00", "-1.00", "3"]
    assert ("candidate backbone=vit_tiny, backbone.pretrained=none has rank runs but no "
            "fine-tuned run with test/acc: left out of τ") in out.stderr
    assert "all done at" not in out.stderr


def test_plain_report_ignores_rank_runs_and_rank_needs_them(store, capsys):
    out = xferlab("report", "--experiment", "study", "--rows", ROWS, "--cols", "data.fraction",
                  "--format", "csv", "--min-n", "2", cwd=store)
    assert out.returncode == 0, out.stderr
    lines = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(lines) == 10 and all(line["n"] == "2" for line in lines)  # 5 x 2 cells, 2 seeds
    assert "confounded" not in out.stderr and "did not log test/acc" not in out.stderr
    # the scores are no results: a plain report does not find them
    code = cli.main(["report", "--uri", store_uri(store), "--experiment", "study", "--rows",
                     ROWS, "--metric", "rank/logme"])
    assert code == 2 and "'rank/logme' is not logged by these runs" in capsys.readouterr().err

    out = xferlab("report", "--experiment", "untuned", "--rows", ROWS, "--rank", cwd=store)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith("xferlab: error: experiment 'untuned' has no FINISHED rank "
                                 "runs (tag kind=rank)")
    assert "xferlab rank tracking.experiment=untuned" in out.stderr
