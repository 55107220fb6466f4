"""The provenance footer `xferlab report --out` writes below a table: the command, the runs it
counts (with a digest of their ids and the commits they were made at), the store, and the commit
and date of the report itself; and the warning for tables that mix code versions.

The footer is one block between two HTML comments (invisible once rendered), so `--append` can
find it, move it below the table it adds and list that command beside the earlier ones.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections import Counter
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pandas as pd

from xferlab.tracking import masked

BEGIN = "<!-- xferlab provenance: written by `xferlab report --out`, extended by --append -->"
END = "<!-- /xferlab provenance -->"
_BLOCK = re.compile(r"\n*---\n" + re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END) + r"\n?",
                    re.DOTALL)
_LEAD = "**Provenance.** "
_NOT_CODE = (".md", ".png")  # the report and its plots are being rewritten: they do not count


def sources(runs: pd.DataFrame, kind: str = "") -> pd.DataFrame:
    """The runs a table counts, as the footer and a plot's caption need them: index run id;
    `start_time`, `end_time` (ms), `commit` (their git.commit tag, NaN without), `dirty`
    (bool), `kind`, `data` and `backbone` (their names, NaN without)."""
    def column(name: str) -> pd.Series:
        return runs[name] if name in runs.columns else pd.Series(None, index=runs.index)

    return pd.DataFrame({"start_time": runs["start_time"], "end_time": runs["end_time"],
                         "commit": column("tags.git.commit"),
                         "dirty": column("tags.git.dirty") == "True", "kind": kind,
                         "data": column("params.data.name"),
                         "backbone": column("params.backbone.name").fillna(
                             column("tags.choice.backbone"))}, index=runs.index)


def digest(run_ids) -> str:
    """sha256 of the sorted run ids, one per line (`sort ids.txt | sha256sum`), 12 hex digits."""
    return hashlib.sha256("".join(f"{r}\n" for r in sorted(run_ids)).encode()).hexdigest()[:12]


def commits(runs: pd.DataFrame) -> Counter:
    """(short commit or None, dirty) -> runs, in the order the runs started."""
    ordered = runs.sort_values("start_time", kind="stable")
    return Counter((c[:7] if isinstance(c, str) else None, bool(d))
                   for c, d in zip(ordered["commit"], ordered["dirty"], strict=True))


def warning(runs: pd.DataFrame) -> str | None:
    """One line when the runs were made at more than one commit or from a dirty tree."""
    found = commits(runs)
    tagged = {c for c, _ in found if c is not None}
    dirty = sum(n for (_, d), n in found.items() if d)
    if len(tagged) < 2 and not dirty:
        return None
    parts = []
    if len(tagged) > 1:
        parts.append(f"come from {len(tagged)} commits ({_listed(found)})")
    if dirty:
        parts.append(f"include {dirty} made from a dirty tree (git.dirty=True)")
    return (f"the {len(runs)} runs tabulated {' and '.join(parts)}: they may differ in code as "
            "well as in config; rerun them at one clean commit, or keep one commit's runs with "
            "--where git.commit=<full sha>")


def entry(command: str, runs: pd.DataFrame, experiment: str, uri: str) -> str:
    """The footer's lines for one `xferlab report` command: the command and its runs."""
    kinds = Counter(k for k in runs["kind"] if k)
    counted = "".join(f", {n} of them {k} runs" for k, n in kinds.items())
    found = commits(runs)
    at = "commit" if len(found) == 1 else "commits"
    return (f"Command: {_code(masked(command))}.\n"
            f"Runs: {len(runs)} FINISHED runs{counted} (sha256 of the sorted run ids, one per "
            f"line: {digest(runs.index)}) at {at} {_listed(found)},\n"
            f"from {_utc(runs['start_time'].min())} to {_utc(runs['end_time'].max())}, MLflow "
            f"experiment `{experiment}` in {_store(uri)}.")


def footer(entries: list[str]) -> str:
    """The block below a report: each command's entry, then who wrote the report and when."""
    body = "\n\n".join([_LEAD + entries[0], *entries[1:], _written_by()])
    return f"\n---\n{BEGIN}\n{body}\n{END}\n"


def split(text: str) -> tuple[str, list[str]]:
    """A report without its footer (the text around it kept in order), and the footer's
    entries; (text, []) when it has none."""
    found = _BLOCK.search(text)
    if found is None:
        return text, []
    rest = text[:found.start()] + "\n" + text[found.end():]
    paragraphs = found[1].removeprefix(_LEAD).split("\n\n")
    return rest.rstrip("\n") + "\n", [p for p in paragraphs if p.startswith("Command: ")]


def attach(text: str, new_entry: str, before: str | None = None) -> str:
    """The Markdown file to write: `before` (an existing report, for --append) without its
    footer, the table `text`, and one footer listing the earlier commands and this one."""
    entries = [new_entry]
    if before:
        before, earlier = split(before)
        entries = [*earlier, new_entry]
        text = before.rstrip("\n") + "\n\n" + text if before.strip() else text
    return text + footer(entries)


def latex(new_entry: str) -> str:
    """The footer as LaTeX comment lines, for a .tex table."""
    lines = ["Provenance.", *new_entry.replace("`", "").splitlines(), _written_by()]
    return "".join(f"% {line}\n" for line in lines)


def html(new_entry: str) -> str:
    """The footer as an HTML block (for a .html page), between the same two comments."""
    paragraphs = [_LEAD + new_entry, _written_by()]
    body = "\n".join(f"<p>{_html_inline(p)}</p>" for p in paragraphs)
    return f"<footer>\n{BEGIN}\n{body}\n{END}\n</footer>\n"


def written() -> str:
    """`commit 1a2b3c4 (clean tree; ...)` of the checkout the report is written from (git in
    the current folder: run from the repository root); *.md and *.png changes do not count."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              check=True).stdout
    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        changed = [line[3:].split(" -> ")[-1].strip('"') for line in
                   git("status", "--porcelain", "--untracked-files=no").splitlines()]
    except (OSError, subprocess.CalledProcessError):
        return "no commit (not a git checkout)"
    dirty = any(not path.endswith(_NOT_CODE) for path in changed)
    return f"commit {head} ({'dirty' if dirty else 'clean'} tree; *.md and *.png not counted)"


def _written_by() -> str:
    return (f"Report written by xferlab at {written()} on "
            f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}.")


def _listed(found: Counter) -> str:
    return ", ".join(f"{c or 'unknown (no git.commit tag)'}{' (dirty)' if d else ''} ({n})"
                     for (c, d), n in found.items())


def _utc(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _store(uri: str) -> str:
    """The store as a reader can follow it: a SQLite file under the current folder relative to
    it (no home folders in committed reports), a password never."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        try:
            return f"sqlite:///{path.resolve().relative_to(Path.cwd().resolve())}"
        except ValueError:
            pass
    return masked(uri)


def _html_inline(text: str) -> str:
    """The footer's Markdown (`code`, ``code with `backticks` ``, **bold**) as HTML."""
    text = escape(text, quote=False)
    text = re.sub(r"``\s(.+?)\s``|`([^`]+)`",
                  lambda m: f"<code>{m[1] if m[1] is not None else m[2]}</code>", text)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text).replace("\n", "<br>\n")


def _code(text: str) -> str:
    """`text` as inline code, even when it holds backticks."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"
