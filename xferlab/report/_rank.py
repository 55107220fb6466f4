"""`xferlab report --rank`: the scores `xferlab rank` logged (runs tagged `kind=rank`) beside the
fine-tuned results of the same candidates, how well each score orders the candidates (Kendall τ,
weighted τ) and what scoring costs next to fine-tuning."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from xferlab.report import _provenance, _runs, _stats
from xferlab.report._render import md_row
from xferlab.report._runs import UNSET, ReportError, is_number

if TYPE_CHECKING:
    from xferlab.report import Report

FIRST = ("rank/logme", "rank/knn", "rank/linear_probe")  # the order `xferlab rank` prints
SCORED_FROM = ("backbone", "data")  # a rank run depends on these groups only (not freeze, optim…)
Labels = tuple[str, ...]


@dataclass
class RankReport:
    finetuned: Report  # the fine-tuned table; its row keys name a candidate
    scores: list[str]  # the rank metrics, e.g. rank/logme
    matched: list[str]  # column keys the rank runs are matched on; the others: every column
    candidates: list[Labels]  # the fine-tuned rows, then candidates with rank runs only
    ranked: dict[tuple, dict]  # (norm row, norm matched labels) -> n, <score>, time <score>
    taus: pd.DataFrame  # per column x score: the col keys, score, each tau, n, score_s, tune_s
    tau_names: list[str]
    rank_runs: int
    warnings: list[str]
    sources: pd.DataFrame  # the fine-tuned and rank runs counted, for provenance

    def rank_cell(self, row: Labels, col: Labels) -> dict | None:
        """The scores of a candidate beside a fine-tuned column (None: no rank run)."""
        keys = self.finetuned.cols
        part = tuple(v for k, v in zip(keys, col, strict=True) if k in self.matched)
        return self.ranked.get((norm(row), norm(part)))


def norm(labels: Sequence[str]) -> tuple[str, ...]:
    """Labels as compared across run kinds: numbers by value (0.10 is 0.1)."""
    return tuple(repr(float(v)) if is_number(v) else v for v in labels)


def build(store: MlflowClient, finetuned: Report, *, where: Sequence[str], ignore: Sequence[str],
          taus: dict[str, Callable]) -> RankReport:
    """The experiment's rank runs matched to the candidates (rows) of the fine-tuned table."""
    rows, cols = finetuned.rows, finetuned.cols
    runs = _load(store, finetuned.experiment)
    warnings = list(finetuned.warnings)
    for clause in where:  # only clauses on what a score depends on; `freeze=full` is not one
        key = _runs.parse_where(clause)[0]
        name = key.removeprefix("params.").removeprefix("tags.choice.")
        if key in rows + cols or name.split(".")[0] in SCORED_FROM:
            try:
                runs = _runs.where(runs, clause)
            except ReportError as err:
                raise ReportError(f"rank runs: {err}") from None
    scores = _scores(runs)
    try:
        columns = {key: _runs.resolve(runs, key, "--rows") for key in rows}
    except ReportError as err:
        raise ReportError(f"rank runs: {err}") from None
    matched = []
    for key in cols:
        try:
            column = _runs.resolve(runs, key, "--cols")
        except ReportError:  # not logged by the rank runs
            column = None
        values = _runs.ordered(runs[column].fillna(UNSET)) if column else []
        if column and len(values) > 1:  # (more than one value: a column)
            columns[key] = column
            matched.append(key)
            continue
        done = {norm([v]) for v in finetuned.cells[key]}
        if column is None:
            warnings.append(f"the rank runs do not log {key}: their scores stand beside every "
                            f"{key} column")
        elif done != {norm(values)}:
            warnings.append(f"the rank runs were all done at {key}={values[0]}: their scores "
                            f"stand beside every {key} column")
    warnings += _confounded(runs, columns, finetuned.seeds, set(ignore))

    tidy = pd.DataFrame({k: runs[c].fillna(UNSET) for k, c in columns.items()})
    ranked = {}
    for labels, group in tidy.groupby(list(columns), sort=False):
        line = runs.loc[group.index]
        cell: dict[str, float] = {"n": len(line)}
        features = line.get("metrics.time/features_s", 0)
        for score in scores:
            own = f"metrics.time/{score.removeprefix('rank/')}_s"
            cell[score] = line[f"metrics.{score}"].mean()
            cell[f"time {score}"] = (features + line[own]).mean() if own in line else np.nan
        ranked[(norm(labels[:len(rows)]), norm(labels[len(rows):]))] = cell
    report = RankReport(
        finetuned=finetuned, scores=scores, matched=matched, candidates=[], ranked=ranked,
        taus=pd.DataFrame(), tau_names=list(taus), rank_runs=len(runs), warnings=warnings,
        sources=pd.concat([finetuned.sources, _provenance.sources(runs, kind="rank")]))
    _candidates(report, tidy, rows)
    report.taus = _taus(report, taus)
    return report


def _load(store: MlflowClient, experiment: str) -> pd.DataFrame:
    found = _runs.experiment_id(store, experiment)
    runs = _runs.search(store, found, "attributes.status = 'FINISHED' and tags.kind = 'rank'")
    if not runs:
        raise ReportError(f"experiment {experiment!r} has no FINISHED rank runs (tag kind=rank) "
                          f"to set beside its fine-tuned runs: score the candidates first, e.g. "
                          f"`xferlab rank tracking.experiment={experiment} backbone=a,b,c`")
    return _runs.frame(runs)


def _scores(runs: pd.DataFrame) -> list[str]:
    found = [c.removeprefix("metrics.") for c in runs.columns
             if c.startswith("metrics.rank/") and runs[c].notna().any()]
    if not found:
        raise ReportError("the rank runs log no score (metrics rank/<score>): rerun "
                          "`xferlab rank`")
    return sorted(found, key=lambda s: (FIRST.index(s) if s in FIRST else len(FIRST), s))


def _confounded(runs: pd.DataFrame, columns: dict[str, str], seeds: list[str],
                ignore: set[str]) -> list[str]:
    """Rank runs averaged into one candidate although they scored other backbones or data."""
    scored = runs[[c for c in runs.columns
                   if c.startswith(tuple(f"params.{g}." for g in SCORED_FROM))]]
    named = {c.removeprefix("params.") for c in columns.values()} | set(seeds) | ignore
    groups = {c.removeprefix("tags.choice.") for c in columns.values()}
    found = _stats.confounders(scored, named, groups)
    if not found:
        return []
    listed = "; ".join(f"{k} ({', '.join(v)})" for k, v in found.items())
    return [(f"confounded scores: rank runs differ in params that are neither rows nor cols, "
             f"and their scores are averaged: {listed}; add them to --rows or filter with "
             "--where")]


def _candidates(report: RankReport, tidy: pd.DataFrame, rows: list[str]) -> None:
    """The candidates in table order, and a warning for each one left out of τ."""
    ft = report.finetuned
    metric = ft.metric
    with_ft = {norm(r): r for r in ft.row_labels}
    with_rank: dict[Labels, Labels] = {}
    for labels in tidy[rows].itertuples(index=False, name=None):
        with_rank.setdefault(norm(labels), labels)
    if not set(with_ft) & set(with_rank):
        raise ReportError(
            f"no candidate has both a rank run and a fine-tuned run with {metric} "
            f"({', '.join(rows)}): fine-tuned: {_listed(with_ft.values())}; ranked: "
            f"{_listed(with_rank.values())}")
    report.candidates = [*ft.row_labels, *(r for n, r in with_rank.items() if n not in with_ft)]
    found = {tuple(c[k] for k in ft.rows + ft.cols) for c in ft.cells.to_dict("records")}
    unranked = [col for col in _col_labels(ft)
                if all(report.rank_cell(row, col) is None for row in ft.row_labels)]
    for col in unranked:  # one line for the column, not one per candidate
        at = ", ".join(f"{k}={v}" for k, v in zip(ft.cols, col, strict=True))
        report.warnings.append(f"no rank run at {at}: no τ there")
    for row in report.candidates:
        name = "candidate " + ", ".join(f"{k}={v}" for k, v in zip(rows, row, strict=True))
        if norm(row) not in with_rank:
            report.warnings.append(f"{name} has no rank run: left out of τ")
        elif norm(row) not in with_ft:
            report.warnings.append(f"{name} has rank runs but no fine-tuned run with {metric}: "
                                   "left out of τ")
        else:
            for col in (c for c in _col_labels(ft) if c not in unranked):
                at = ", ".join(f"{k}={v}" for k, v in zip(ft.cols, col, strict=True))
                if row + col not in found:
                    report.warnings.append(f"{name} has no fine-tuned run at {at}: left out "
                                           "of τ there")
                elif report.rank_cell(row, col) is None:
                    report.warnings.append(f"{name} has no rank run at {at}: left out of τ "
                                           "there")


def _taus(report: RankReport, taus: dict[str, Callable]) -> pd.DataFrame:
    """Per column and score: each τ between the score and the fine-tuned mean over the
    candidates that have both, how many they are, and the mean seconds per candidate spent on
    scoring (features + the score) and on one fine-tuning run."""
    ft = report.finetuned
    cells = {tuple(c[k] for k in ft.rows + ft.cols): c for c in ft.cells.to_dict("records")}
    seconds = {labels: group["seconds"].mean()
               for labels, group in ft.values.groupby(ft.rows + ft.cols, sort=False)}
    lines = []
    for col in _col_labels(ft):
        both = [(row, cells[row + col], ranked) for row in ft.row_labels
                if row + col in cells and (ranked := report.rank_cell(row, col)) is not None]
        tuned = [seconds[row + col] for row, _, _ in both]
        for score in report.scores:
            pairs = [(c["mean"], r[score], r[f"time {score}"]) for _, c, r in both
                     if not np.isnan(r[score])]
            results, values, spent = (
                (np.array(v, dtype=float) for v in zip(*pairs, strict=True)) if pairs
                else (np.array([]),) * 3)
            lines.append({**dict(zip(ft.cols, col, strict=True)), "score": score,
                          **{name: fn(values, results) for name, fn in taus.items()},
                          "n": len(pairs), "score_s": _mean(spent), "tune_s": _mean(tuned)})
    return pd.DataFrame(lines)


def _mean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if len(values) and not np.isnan(values).all() else np.nan


def _col_labels(ft: Report) -> list[Labels]:
    return ft.col_labels if ft.cols else [()]


def _listed(labels) -> str:
    return "; ".join(",".join(r) for r in labels) or "(none)"


def rank_markdown(report: RankReport, digits: int = 3) -> str:
    """The candidates' fine-tuned results and scores, then each τ and the time it took."""
    ft = report.finetuned
    cols = _col_labels(ft)

    def at(col: Labels, keys: list[str]) -> str:
        shown = [f"{k}={v}" for k, v in zip(ft.cols, col, strict=True) if k in keys]
        return f" · {', '.join(shown)}" if shown else ""

    heads = list(ft.rows)
    cells: list[Callable[..., str]] = []  # each: a row's labels -> its text in the column
    for col in cols:
        heads.append(f"{ft.metric}{at(col, ft.cols)}")
        cells.append(lambda row, col=col: _tuned(ft, row, col, digits))
        for score in report.scores if report.matched else []:
            heads.append(f"{score}{at(col, report.matched)}")
            cells.append(lambda row, col=col, s=score: _score(report.rank_cell(row, col), s,
                                                              digits))
    for score in [] if report.matched else report.scores:
        heads.append(score)
        cells.append(lambda row, s=score: _score(report.rank_cell(row, cols[0]), s, digits))
    title = (f"### {ft.metric} after fine-tuning and rank scores by {' × '.join(ft.rows)} — "
             f"experiment `{ft.experiment}`, {ft.runs} fine-tuned runs, {report.rank_runs} "
             "rank runs")
    legend = (f"fine-tuned: mean ± std (n) over {', '.join(ft.seeds) or 'runs'}; scores "
              "(higher: more transferable): mean over the candidate's rank runs, (n) when "
              "several")
    lines = [title, "", legend, "", md_row(heads),
             "|" + "---|" * len(ft.rows) + "--:|" * (len(heads) - len(ft.rows))]
    lines += [md_row([*row, *(cell(row) for cell in cells)]) for row in report.candidates]

    title = (f"### Kendall τ and weighted τ between each score and mean {ft.metric}, over the "
             "candidates")
    legend = ("scoring s: mean per candidate of time/features_s + the score's own time (features "
              "from the cache cost little); fine-tuning s: mean per candidate of one fine-tuning "
              "run's duration")
    heads = [*ft.cols, "score", *report.tau_names, "candidates", "scoring s", "fine-tuning s"]
    keys = len(ft.cols) + 1
    lines += ["", title, "", legend, "", md_row(heads),
              "|" + "---|" * keys + "--:|" * (len(heads) - keys)]
    for line in report.taus.to_dict("records"):
        lines.append(md_row([*(line[k] for k in ft.cols), line["score"],
                           *(_num(line[t], 2) for t in report.tau_names), str(line["n"]),
                           _num(line["score_s"], 2), _num(line["tune_s"], 1)]))
    lines += [f"\n> **warning:** {w}" for w in report.warnings]
    return "\n".join(lines) + "\n"


def _tuned(ft: Report, row: Labels, col: Labels, digits: int) -> str:
    keys = ft.rows + ft.cols
    found = ft.cells[(ft.cells[keys] == pd.Series(row + col, index=keys)).all(axis=1)]
    if found.empty:
        return "—"
    c = found.iloc[0]
    spread = f" ± {c['std']:.{digits}f}" if c["n"] > 1 else ""
    mark = " †" if c["n"] < ft.min_n else ""
    return f"{c['mean']:.{digits}f}{spread} ({c['n']}){mark}"


def _score(cell: dict | None, score: str, digits: int) -> str:
    if cell is None or np.isnan(cell[score]):
        return "—"
    return f"{cell[score]:.{digits}f}" + (f" ({cell['n']})" if cell["n"] > 1 else "")


def _num(value: float, digits: int) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.{digits}f}"
