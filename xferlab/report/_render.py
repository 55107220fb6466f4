"""A report as Markdown, LaTeX (booktabs) or CSV, and its metric against a numeric column key as a
figure ready for a paper. Several metrics stand side by side: a column per metric in each cell."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from xferlab import figures
from xferlab.report._runs import ReportError, is_number
from xferlab.report._stats import SUMMARY

if TYPE_CHECKING:
    from xferlab.report import Report

Cell = Callable[[dict], str]
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def markdown(report: Report, digits: int = 3) -> str:
    """The table, the paired differences if asked, and the warnings (which explain †)."""
    title = (f"### {report.metric} by {' × '.join(report.rows + report.cols)} — experiment "
             f"`{report.experiment}`, {report.runs} runs")
    legend = f"mean ± std [95% bootstrap CI] (n) over {', '.join(report.seeds) or 'runs'}"
    lines = [title, "", legend, "",
             *_md_table(report, report.cells, lambda c: _md_cell(c, digits, report.min_n))]
    if report.paired is not None:
        title = (f"### Δ {report.metric} vs {_baseline(report)}, paired by "
                 f"{', '.join(report.seeds)}")
        lines += ["", title, "", "mean difference [95% bootstrap CI] (pairs)", "",
                  *_md_table(report, report.paired, lambda c: _md_diff(c, digits),
                             skip=report.baseline)]
    lines += [f"\n> **warning:** {w}" for w in report.warnings]
    return "\n".join(lines) + "\n"


def latex(report: Report, digits: int = 3) -> str:
    """booktabs tabulars (the table, then the paired differences), warnings as comments."""
    title = (f"% xferlab report: {report.metric} by {' x '.join(report.rows + report.cols)}, "
             f"experiment {report.experiment}, {report.runs} runs")
    legend = (f"% cells: mean \\pm std over {', '.join(report.seeds) or 'runs'} "
              f"[95% bootstrap CI]; \\dagger: fewer than {report.min_n} runs")
    lines = [title, legend,
             *_tex_table(report, report.cells, lambda c: _tex_cell(c, digits, report.min_n))]
    if report.paired is not None:
        lines += [f"% paired difference to {_baseline(report)} [95% bootstrap CI]",
                  *_tex_table(report, report.paired, lambda c: _tex_diff(c, digits),
                              skip=report.baseline)]
    lines += [f"% warning: {w}" for w in report.warnings]
    return "\n".join(lines) + "\n"


def csv(report: Report) -> str:
    """One line per cell and metric: its keys, metric, n, mean, std, ci_low, ci_high, low_n (and
    the paired difference as diff_*), at full precision."""
    keys = [*report.rows, *report.cols, "metric"]
    table = report.cells.assign(low_n=report.cells["n"] < report.min_n)
    if report.paired is not None:
        diffs = report.paired.rename(columns={s: f"diff_{s}" for s in SUMMARY})
        table = table.merge(diffs, on=keys, how="left").astype({"diff_n": "Int64"})
    return table.to_csv(index=False)


@figures.styled
def plot(report: Report) -> Figure:
    """Each metric (a panel each, side by side) against the first numeric column key: one line
    per row value (and value of the other column keys), each with its own marker and line style,
    its 95% CI as a band; log x when the key spans a decade; open markers: cells under --min-n.
    Human labels, and the runs' data, backbone, seeds and commit as the caption."""
    x_key = next((k for k in report.cols if all(map(is_number, report.cells[k]))), None)
    if x_key is None:
        raise ReportError("--plot needs a numeric column key, e.g. --cols data.fraction; column "
                          f"keys: {', '.join(report.cols) or '(none)'}")
    others = [k for k in report.rows + report.cols if k != x_key]
    table = report.cells.assign(x=report.cells[x_key].astype(float))
    fig = figures.figure(0.4 + 4.6 * len(report.metrics), 3.4)
    axes = fig.subplots(1, len(report.metrics), squeeze=False)[0]
    ticks = sorted(table["x"].unique())
    names = list(dict.fromkeys(table[others].itertuples(index=False, name=None)))
    style_of = dict(zip(names, figures.styles(others, names), strict=True))  # in every panel
    for ax, metric in zip(axes, report.metrics, strict=True):
        for labels, group in table[table["metric"] == metric].groupby(others, sort=False):
            group = group.sort_values("x")
            style = style_of[labels]
            ax.plot(group["x"], group["mean"], markeredgecolor="white", markeredgewidth=0.6,
                    label=", ".join(map(figures.value_label, others, labels)), **style)
            ax.fill_between(group["x"], group["ci_low"], group["ci_high"], color=style["color"],
                            alpha=0.15, linewidth=0)
            low = group[group["n"] < report.min_n]  # open markers: too few runs to trust
            ax.scatter(low["x"], low["mean"], marker=style["marker"], facecolor="white",
                       edgecolor=style["color"], zorder=3)
        if ticks[0] > 0 and ticks[-1] / ticks[0] >= 10:
            ax.set_xscale("log")
        ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])  # the values measured, no others
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(figures.label(x_key))
        ax.set_ylabel(f"{figures.label(metric)} (mean, 95% CI)")
    handles, texts = axes[0].get_legend_handles_labels()
    if (table["n"] < report.min_n).any():
        handles.append(Line2D([], [], linestyle="none", marker="o", color="gray",
                              markerfacecolor="white"))
        texts.append(f"n < {report.min_n} runs")
    axes[0].legend(handles, texts, title=", ".join(map(figures.label, others)), fontsize="small")
    return figures.caption(fig, plot_caption(report))


def plot_caption(report: Report) -> str:
    """`data: … · backbone: … · n = 3 per point (seed × data.subset_seed) · commit …`: what
    the runs a plot counts were made of and at."""
    sources = report.sources
    low, high = int(report.cells["n"].min()), int(report.cells["n"].max())
    n = f"{low}" if low == high else f"{low} to {high}"
    replicas = " × ".join(report.seeds) or "runs"
    commit = figures.commit_text(zip(sources["commit"], sources["dirty"], strict=True))
    return figures.caption_line(data=_listed(sources["data"]),
                                backbone=_listed(sources["backbone"]),
                                seeds=f"n = {n} per point ({replicas})", commit=commit)


def _listed(values: pd.Series) -> str | None:
    """The distinct values (at most three, then how many more), None without any."""
    found = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    if not found:
        return None
    return ", ".join(found[:3]) + (f" (+{len(found) - 3} more)" if len(found) > 3 else "")


def _grid(report: Report, table: pd.DataFrame,
          skip: tuple[str, ...] | None) -> list[tuple[tuple[str, ...], list[dict | None]]]:
    """(row labels, the entry of each column and metric or None), in table order."""
    keys = [*report.rows, *report.cols, "metric"]
    found = {tuple(c[k] for k in keys): c for c in table.to_dict("records")}
    return [(row, [found.get((*row, *col, metric)) for col in report.col_labels
                   for metric in report.metrics])
            for row in report.row_labels if row != skip]


def _heads(report: Report) -> list[str]:
    """The head of each column: its col keys' values, the metric, or (several metrics and col
    keys) both, as `test/acc · data.fraction=0.1` (the heads of `report --rank`)."""
    if not report.cols:
        return list(report.metrics)
    at = [", ".join(f"{k}={v}" for k, v in zip(report.cols, col, strict=True))
          for col in report.col_labels]
    if len(report.metrics) == 1:
        return at
    return [f"{metric} · {col}" for col in at for metric in report.metrics]


def _md_table(report: Report, table: pd.DataFrame, cell: Cell,
              skip: tuple[str, ...] | None = None) -> list[str]:
    heads = _heads(report)
    lines = [md_row([*report.rows, *heads]), "|" + "---|" * len(report.rows) + "--:|" * len(heads)]
    for row, cells in _grid(report, table, skip):
        lines.append(md_row([*row, *(cell(c) if c else "—" for c in cells)]))
    return lines


def md_row(texts: list) -> str:
    return "| " + " | ".join(str(t).replace("|", "\\|") for t in texts) + " |"


def _md_cell(c: dict, digits: int, min_n: int) -> str:
    spread = f" ± {c['std']:.{digits}f}" if c["n"] > 1 else ""
    mark = " †" if c["n"] < min_n else ""
    return (f"{c['mean']:.{digits}f}{spread} [{c['ci_low']:.{digits}f}, "
            f"{c['ci_high']:.{digits}f}] ({c['n']}){mark}")


def _md_diff(c: dict, digits: int) -> str:
    return (f"{c['mean']:+.{digits}f} [{c['ci_low']:+.{digits}f}, {c['ci_high']:+.{digits}f}] "
            f"({c['n']})")


def _tex_table(report: Report, table: pd.DataFrame, cell: Cell,
               skip: tuple[str, ...] | None = None) -> list[str]:
    k, w = len(report.rows), len(report.metrics)
    m = len(report.col_labels) * w  # columns of values: a metric per col label
    lines = [f"\\begin{{tabular}}{{{'l' * k}{'c' * m}}}", r"\toprule"]
    if report.cols:
        skipped = f"\\multicolumn{{{k}}}{{l}}{{}}"  # above the row keys
        spanner = f"{skipped} & \\multicolumn{{{m}}}{{c}}{{{_tex(', '.join(report.cols))}}} \\\\"
        lines += [spanner, f"\\cmidrule(lr){{{k + 1}-{k + m}}}"]
        if w == 1:
            lines.append(_tex_row([*report.rows, *(", ".join(col) for col in report.col_labels)]))
        else:  # each col label over its metrics
            spans = [f"\\multicolumn{{{w}}}{{c}}{{{_tex(', '.join(col))}}}"
                     for col in report.col_labels]
            rules = [f"\\cmidrule(lr){{{k + 1 + i * w}-{k + (i + 1) * w}}}"
                     for i in range(len(report.col_labels))]
            lines += [" & ".join([skipped, *spans]) + r" \\", " ".join(rules),
                      _tex_row([*report.rows, *report.metrics * len(report.col_labels)])]
    else:
        lines.append(_tex_row([*report.rows, *report.metrics]))
    lines.append(r"\midrule")
    for row, cells in _grid(report, table, skip):
        lines.append(" & ".join([*map(_tex, row), *(cell(c) if c else "--" for c in cells)])
                     + r" \\")
    return [*lines, r"\bottomrule", r"\end{tabular}"]


def _tex_row(texts: list[str]) -> str:
    return " & ".join(map(_tex, texts)) + r" \\"


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _tex_cell(c: dict, digits: int, min_n: int) -> str:
    spread = f" \\pm {c['std']:.{digits}f}" if c["n"] > 1 else ""
    mark = "$^\\dagger$" if c["n"] < min_n else ""
    return (f"${c['mean']:.{digits}f}{spread}$ {{\\scriptsize [{c['ci_low']:.{digits}f}, "
            f"{c['ci_high']:.{digits}f}]}}{mark}")


def _tex_diff(c: dict, digits: int) -> str:
    return (f"${c['mean']:+.{digits}f}$ {{\\scriptsize [{c['ci_low']:+.{digits}f}, "
            f"{c['ci_high']:+.{digits}f}]}}")


def _baseline(report: Report) -> str:
    assert report.baseline is not None  # called for the paired table only, which has one
    return ", ".join(f"{k}={v}" for k, v in zip(report.rows, report.baseline, strict=True))
