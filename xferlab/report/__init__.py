"""`xferlab report`: an experiment's finished MLflow runs -> ablation tables and plots.

Runs are grouped by row and column keys (config groups, params or tags) and summarized over
seeds: mean ± std, n and a 95% bootstrap CI; optionally the paired difference to a baseline row.
Several metrics stand side by side in each cell: the metric is the innermost column key.
Rendering (Markdown, LaTeX, CSV, the plot) lives in `_render`, the HTML page in `_html`; `rank`
(in `_rank`) sets the scores of `xferlab rank` beside the fine-tuned results of the same
candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xferlab import figures, tracking
from xferlab.report import _html, _provenance, _rank, _render, _runs, _stats
from xferlab.report._rank import RankReport, rank_markdown
from xferlab.report._render import csv, latex, markdown
from xferlab.report._runs import DERIVED, UNSET, ReportError, load, parse_since, same_value

__all__ = ["PAGE", "SUFFIXES", "RankReport", "Report", "ReportError", "client", "csv", "latex",
           "load", "log", "make", "markdown", "mixed_code", "page", "parse_since", "plot", "rank",
           "rank_markdown", "with_provenance"]

SUFFIXES = {"md": ".md", "latex": ".tex", "csv": ".csv"}  # format -> file suffix
PAGE = ".html"  # `--out` writes a self-contained page (tables, plot, provenance)
# columns of the report's own frames: a key named so could not be told from them
RESERVED = frozenset({"metric", "value", "seconds", *_stats.SUMMARY})


@dataclass
class Report:
    experiment: str
    metrics: list[str]  # side by side in each cell, in the order asked for
    rows: list[str]
    cols: list[str]
    seeds: list[str]
    min_n: int
    cells: pd.DataFrame  # one line per cell and metric with runs: row keys, col keys,
    # `metric`, n, mean, std, ci_*
    row_labels: list[tuple[str, ...]]  # in table order
    col_labels: list[tuple[str, ...]]
    paired: pd.DataFrame | None  # like `cells`, for differences to the baseline row
    baseline: tuple[str, ...] | None
    runs: int
    parents: list[str | None]  # the parent run of each sweep the runs belong to (None: no sweep)
    warnings: list[str]
    values: pd.DataFrame  # one line per run and metric counted: its keys' labels, `metric`,
    # `value`, `seconds` it ran
    sources: pd.DataFrame  # the runs counted, for provenance: start/end, git commit and dirty

    @property
    def metric(self) -> str:
        """The metrics as titles name them: `test/acc`, or `test/acc, test/ece`."""
        return ", ".join(self.metrics)

    def sweep_parent(self) -> str:
        """The parent run of the one sweep all runs belong to (where `--log` writes)."""
        if len(self.parents) != 1 or self.parents[0] is None:
            listed = ", ".join(p or "(runs outside a sweep)" for p in self.parents)
            raise ReportError(f"--log needs the runs of one sweep, these come from: {listed}; "
                              "pass --parent RUN_ID")
        return self.parents[0]


def client(uri: str | None) -> MlflowClient:
    """A client of the store `xferlab train` writes (`--uri`, else MLFLOW_TRACKING_URI, else
    sqlite:///outputs/mlflow.db)."""
    uri = tracking.resolve_uri(uri)
    path = Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("sqlite:///") and not path.is_file():  # never create an empty store
        raise ReportError(f"no MLflow store at {path}: run the report where `xferlab train` "
                          "ran, or pass --uri")
    try:
        return MlflowClient(uri)
    except MlflowException:  # an unknown scheme
        raise ReportError(f"--uri {uri!r} is not an MLflow store URI: give sqlite:///<path>/"
                          "mlflow.db or http(s)://<host>:<port> of an MLflow server") from None


def make(store: MlflowClient, experiment: str, *, rows: Sequence[str], cols: Sequence[str] = (),
         metrics: Sequence[str] = ("test/acc",),
         seeds: Sequence[str] = ("seed", "data.subset_seed"), where: Sequence[str] = (),
         since: datetime | None = None, parent: str | None = None, min_n: int = 3,
         paired_vs: str | None = None, ignore: Sequence[str] = ()) -> Report:
    """The table of `metrics` (side by side) by rows x cols over the experiment's FINISHED
    runs. Each metric counts the runs that logged it, as a table of that metric alone would."""
    rows, cols, seeds, metrics = list(rows), list(cols), list(seeds), list(metrics)
    keys = [*rows, *cols, *seeds]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ReportError(f"{', '.join(repeated)} named twice among --rows, --cols and --seeds: "
                          "name each key once")
    reserved = sorted(RESERVED & set(keys))
    if reserved:
        raise ReportError(f"key {reserved[0]!r} names a column of the report itself: give it as "
                          f"params.{reserved[0]} or tags.{reserved[0]}")
    twice = sorted({m for m in metrics if metrics.count(m) > 1})
    if twice or not metrics:
        named = f"names {', '.join(twice)} twice" if twice else "names no metric"
        raise ReportError(f"--metric {','.join(metrics)!r} {named}: give each metric once, "
                          "comma-separated, e.g. --metric test/acc,test/ece")
    if paired_vs is not None and not seeds:
        raise ReportError("--paired-vs pairs runs by their seeds: give --seeds, e.g. "
                          "--seeds seed,data.subset_seed")
    runs = _runs.load(store, experiment, parent=parent, since=since)
    for clause in where:
        runs = _runs.where(runs, clause)
    values = {metric: _runs.resolve_metric(runs, metric) for metric in metrics}
    columns = {key: _runs.resolve(runs, key, flag)
               for flag, named in (("--rows", rows), ("--cols", cols), ("--seeds", seeds))
               for key in named}
    tidies: list[pd.DataFrame] = []
    counted: set[str] = set()
    warnings: list[str] = []
    for metric, value in values.items():
        kept, found = _comparable(runs, columns, value, metric, set(ignore),
                                  alone=len(metrics) == 1)
        tidy = pd.DataFrame({key: kept[column].fillna(UNSET) for key, column in columns.items()})
        tidy["metric"] = metric
        tidy["value"] = kept[value]
        tidy["seconds"] = (kept["end_time"] - kept["start_time"]) / 1000
        tidies.append(tidy)
        counted |= set(kept.index)
        warnings += [w for w in found if w not in warnings]  # the same confounders: once
    runs = runs[runs.index.isin(counted)]
    tidy = pd.concat(tidies)
    rank = {key: {label: i for i, label in enumerate(_runs.ordered(runs[column].fillna(UNSET)))}
            for key, column in columns.items()}
    rank["metric"] = {metric: i for i, metric in enumerate(metrics)}
    # the metric is the innermost column key: each cell holds one summary per metric
    table = _sorted(_stats.cells(tidy, [*rows, *cols, "metric"]), rank)
    row_labels = _labels(table, rows, rank)
    col_labels = _labels(table, cols, rank)
    grid = table[[*rows, *cols]].drop_duplicates()  # a cell is marked if any metric is low
    low = table.loc[table["n"] < min_n, [*rows, *cols]].drop_duplicates()
    if len(low):
        warnings.append(f"{len(low)} of {len(grid)} cells have fewer than {min_n} runs "
                        "(marked †)")

    baseline = paired = None
    if paired_vs is not None:
        baseline = _baseline(paired_vs, rows, row_labels)
        paired = _sorted(_stats.paired(tidy, rows, [*cols, "metric"], seeds, baseline), rank)
    return Report(experiment=experiment, metrics=metrics, rows=rows, cols=cols, seeds=seeds,
                  min_n=min_n, cells=table, row_labels=row_labels, col_labels=col_labels,
                  paired=paired, baseline=baseline, runs=len(runs),
                  parents=list(dict.fromkeys(p if isinstance(p, str) else None
                                             for p in runs["parent"])),
                  warnings=warnings, values=tidy, sources=_provenance.sources(runs))


def rank(store: MlflowClient, experiment: str, *, taus: dict[str, Callable],
         **options) -> RankReport:
    """The fine-tuned table (`make`'s options; its rows are the candidates) with the scores of
    the experiment's `kind=rank` runs beside it and each `taus` ({name: fn(scores, results)})
    between each score and the fine-tuned mean."""
    metrics = list(options.get("metrics", ()))
    if len(metrics) > 1:
        raise ReportError(f"--rank sets the scores beside one fine-tuned metric, not "
                          f"{len(metrics)}: give one --metric, e.g. --metric {metrics[0]}")
    finetuned = make(store, experiment, **options)
    return _rank.build(store, finetuned, where=options.get("where", ()),
                       ignore=options.get("ignore", ()), taus=taus)


def _comparable(runs: pd.DataFrame, columns: dict[str, str], value: str, metric: str,
                ignore: set[str], alone: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The runs that can be compared on one metric (`alone`: the table's only one), and
    warnings: runs without the metric are left out, a rerun counts once, and params that
    differ although no key names them are confounders."""
    warnings = []
    lacking = runs[value].isna()
    if lacking.any():
        warnings.append(f"{lacking.sum()} of {len(runs)} runs did not log {metric}: left out"
                        f"{'' if alone else ' of its columns'}")
        runs = runs[~lacking]
    params = [c for c in runs.columns
              if c.startswith("params.") and c.removeprefix("params.") not in ignore | DERIVED]
    kept = _stats.latest_reruns(runs, [*columns.values(), *params])
    if len(kept) < len(runs):
        warnings.append(f"{len(runs) - len(kept)} runs repeat an earlier run's config and seeds: "
                        "only the latest of each counts")
    named = {c.removeprefix("params.") for c in columns.values() if c.startswith("params.")}
    groups = {c.removeprefix("tags.choice.") for c in columns.values()
              if c.startswith("tags.choice.")}
    confounded = _stats.confounders(kept, named | ignore, groups)
    if confounded:
        listed = "; ".join(f"{k} ({', '.join(v)})" for k, v in confounded.items())
        warnings.append(f"confounded comparison: runs differ in params that are neither rows, "
                        f"cols nor seeds: {listed}; add them to --rows/--cols, filter with "
                        "--where, or --ignore those that cannot matter")
    return kept, warnings


def _sorted(table: pd.DataFrame, rank: dict[str, dict[str, int]]) -> pd.DataFrame:
    keys = [c for c in table.columns if c in rank]
    return table.sort_values(keys, key=lambda s: s.map(rank[s.name])).reset_index(drop=True)


def _labels(table: pd.DataFrame, keys: list[str],
            rank: dict[str, dict[str, int]]) -> list[tuple[str, ...]]:
    found = set(table[keys].itertuples(index=False, name=None))
    return sorted(found, key=lambda labels: [rank[k][v] for k, v in zip(keys, labels, strict=True)])


def _baseline(paired_vs: str, rows: list[str],
              row_labels: list[tuple[str, ...]]) -> tuple[str, ...]:
    wanted = [v.strip() for v in paired_vs.split(",")]
    for labels in row_labels:
        if len(wanted) == len(labels) and all(map(same_value, labels, wanted)):
            return labels
    listed = ", ".join(",".join(labels) for labels in row_labels)
    raise ReportError(f"--paired-vs {paired_vs!r} is not a row of the table ({', '.join(rows)}); "
                      f"rows: {listed}")


def log(store: MlflowClient, report: Report, texts: dict[str, str], figure=None) -> str:
    """Log the rendered report ({format: text}) and the plot as artifacts of the sweep's parent
    run under `report/`; returns the parent run id."""
    parent = report.sweep_parent()
    stem = "_".join(["+".join(report.metrics), "by", *report.rows,
                     *(["x", *report.cols] if report.cols else [])]).replace("/", "-")
    for fmt, text in texts.items():
        store.log_text(parent, text, f"report/{stem}{SUFFIXES[fmt]}")
    if figure is not None:
        store.log_figure(parent, figure, f"report/{stem}.png", save_kwargs=figures.SAVE)
    return parent


def plot(report: Report) -> Figure:
    """Each metric, a panel each, against the first numeric column key (see `_render.plot`)."""
    return _render.plot(report)


def mixed_code(table: Report | RankReport) -> str | None:
    """A warning when the runs a table counts were made at several commits or from a dirty
    tree (their git.commit and git.dirty tags), else None."""
    return _provenance.warning(table.sources)


def with_provenance(text: str, fmt: str, table: Report | RankReport, *, command: str, uri: str,
                    before: str | None = None) -> str:
    """The file `--out` writes: the rendered table and, below it, its provenance footer (the
    command, its runs, their commits, the store, the report's own commit and date). Markdown
    gets the footer block (with `before`, an existing report, its footer moves below `text`
    and lists every command), LaTeX comment lines, CSV nothing."""
    if fmt == "csv":
        return text
    experiment = table.finetuned.experiment if isinstance(table, RankReport) else table.experiment
    entry = _provenance.entry(command, table.sources, experiment, uri)
    if fmt == "latex":
        return text + _provenance.latex(entry)
    return _provenance.attach(text, entry, before)


def page(table: Report, figure: Figure | None, *, command: str, uri: str,
         digits: int = 3) -> str:
    """The self-contained HTML page `--out PATH.html` writes: the tables, the plot (if any)
    embedded as a PNG, the warnings, and the provenance footer of `with_provenance`."""
    footer = _provenance.html(_provenance.entry(command, table.sources, table.experiment, uri))
    mixed = mixed_code(table)
    return _html.page(table, figure, footer, digits, warnings=[mixed] if mixed else [])
