"""A report as one self-contained HTML page to send to a colleague: the tables, the plot
embedded as a PNG (no file beside it, nothing fetched), the warnings and the provenance."""

from __future__ import annotations

import base64
import html
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from xferlab.figures import DPI, caption_of, encode
from xferlab.report._render import _baseline, _grid, _heads, _md_cell, _md_diff

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from xferlab.report import Report
    from xferlab.report._render import Cell

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
       max-width: 68rem; margin: 2rem auto; padding: 0 1.2rem; }
h1 { font-size: 1.35rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #ddd; text-align: left; }
thead th { border-bottom: 2px solid #333; }
td.num, th.num { text-align: right; white-space: nowrap; }
.legend, footer { color: #555; font-size: 0.9rem; }
.warning { color: #8a4b00; }
figure { margin: 1.5rem 0; } img { max-width: 100%; height: auto; }
footer { border-top: 1px solid #ccc; margin-top: 2.5rem; padding-top: 0.5rem; }
code { font-size: 0.85rem; background: #f4f4f4; padding: 0.05rem 0.25rem; }
"""


def page(report: Report, figure: Figure | None, footer: str, digits: int = 3,
         warnings: Sequence[str] = ()) -> str:
    """The page: title, legend, the table (and the paired differences), the report's warnings
    and `warnings`, the figure if any, and `footer` (HTML, the provenance) at the bottom."""
    keys = " × ".join(report.rows + report.cols)
    title = f"{report.metric} by {keys} — experiment {report.experiment}, {report.runs} runs"
    parts = [f"<h1>{_text(title)}</h1>",
             f'<p class="legend">mean ± std [95% bootstrap CI] (n) over '
             f"{_text(', '.join(report.seeds) or 'runs')}; † fewer than {report.min_n} runs</p>",
             _table(report, report.cells, lambda c: _md_cell(c, digits, report.min_n))]
    if report.paired is not None:
        parts += [f"<h2>Δ {_text(report.metric)} vs {_text(_baseline(report))}, paired by "
                  f"{_text(', '.join(report.seeds))}</h2>",
                  '<p class="legend">mean difference [95% bootstrap CI] (pairs)</p>',
                  _table(report, report.paired, lambda c: _md_diff(c, digits),
                         skip=report.baseline)]
    parts += [f'<p class="warning"><strong>warning:</strong> {_text(w)}</p>'
              for w in [*report.warnings, *warnings]]
    if figure is not None:
        parts.append(_figure(figure))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"generator\" content=\"xferlab report\">\n<title>{_text(title)}"
            f"</title>\n<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(parts)
            + f"\n{footer}</body>\n</html>\n")


def _table(report: Report, table: pd.DataFrame, cell: Cell,
           skip: tuple[str, ...] | None = None) -> str:
    head = "".join([*(f"<th>{_text(k)}</th>" for k in report.rows),
                    *(f'<th class="num">{_text(h)}</th>' for h in _heads(report))])
    body = "\n".join(
        "<tr>" + "".join([*(f"<td>{_text(v)}</td>" for v in row),
                          *(f'<td class="num">{_text(cell(c) if c else "—")}</td>'
                            for c in cells)]) + "</tr>"
        for row, cells in _grid(report, table, skip))
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _figure(figure: Figure) -> str:
    """The figure as an embedded PNG, shown at 1.5 times its size in print (a CSS px is 1/96
    inch): a screen is read from further away than paper; 200 dpi stays sharp at that size."""
    png = encode(figure, "png")
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk: always first
    scale = 1.5 * 96 / DPI
    alt = caption_of(figure) or "plot"
    return (f'<figure><img src="data:image/png;base64,{base64.b64encode(png).decode()}" '
            f'width="{round(width * scale)}" height="{round(height * scale)}" '
            f'alt="{_text(alt)}"></figure>')


def _text(value: object) -> str:
    return html.escape(str(value))
