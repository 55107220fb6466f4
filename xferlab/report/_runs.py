"""An experiment's finished runs as one pandas frame; row, column and filter keys resolved in it."""

from __future__ import annotations

import difflib
import re
from datetime import datetime, timedelta

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

# Params each run derives from its config (subset size and digest, weight digests, the source
# run): they differ between seeds or builds by construction and never confound a comparison.
DERIVED = frozenset({"data.train_size", "data.subset_digest", "backbone.weights_digest",
                     "source.run_id"})
_PARENT = "mlflow.parentRunId"
UNSET = "(unset)"  # the label of a key a run did not log
# Runs that are not results: a sweep's or a study's parent, the scores of `xferlab rank`
NOT_RESULTS = frozenset({"sweep", "study", "rank"})


class ReportError(ValueError):
    """What the user asked for does not exist or does not parse; `xferlab report` exits 2."""


def load(client: MlflowClient, experiment: str, *, parent: str | None = None,
         since: datetime | None = None) -> pd.DataFrame:
    """One line per FINISHED result run, oldest first: sweep and study parents and the scores
    `xferlab rank` logs (`kind=rank`) are left out.

    Index: run id. Columns: `start_time`, `end_time` (ms), `parent`, and `params.<key>`,
    `tags.<key>`, `metrics.<key>` as strings (params, tags) and floats (metrics).
    """
    found = experiment_id(client, experiment)
    clauses = ["attributes.status = 'FINISHED'"]
    if since is not None:
        clauses.append(f"attributes.start_time >= {int(since.timestamp() * 1000)}")
    if parent == "latest":  # the sweep launched last, e.g. the one `make demo` just ran
        sweeps = client.search_runs([found], "tags.kind = 'sweep'",
                                    order_by=["attributes.start_time DESC"], max_results=1)
        if not sweeps:
            raise ReportError(f"--parent latest: experiment {experiment!r} has no sweep; "
                              "run a multirun (xferlab train -m ...) or drop --parent")
        parent = sweeps[0].info.run_id
    if parent is not None:
        if not re.fullmatch(r"\w+", parent):
            raise ReportError(f"--parent {parent!r} is not a run id: give the 32-character id "
                              "of the sweep's parent run")
        clauses.append(f"tags.`{_PARENT}` = '{parent}'")
    runs = search(client, found, " and ".join(clauses))
    parents = {r.data.tags.get(_PARENT) for r in runs}
    runs = [r for r in runs
            if r.data.tags.get("kind") not in NOT_RESULTS and r.info.run_id not in parents]
    if not runs:
        raise ReportError(_nothing_found(client, found, experiment, parent, since))
    return frame(runs)


def experiment_id(client: MlflowClient, experiment: str) -> str:
    """The id of the experiment named so, or a ReportError naming those that exist."""
    try:
        found = client.get_experiment_by_name(experiment)
    except MlflowException as err:  # a server that does not answer, a store that is not one
        raise ReportError(f"cannot read the MLflow store {client.tracking_uri}: "
                          f"{err.message}") from None
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise ReportError(f"no experiment {experiment!r}{_did_you_mean(experiment, names)}; "
                          f"experiments in the store: {', '.join(names) or '(none)'}")
    return found.experiment_id


def frame(runs: list) -> pd.DataFrame:
    """MLflow runs as `load` returns them: one line per run, indexed by run id, oldest first."""
    table = pd.DataFrame.from_records([{
        "run_id": r.info.run_id, "start_time": r.info.start_time, "end_time": r.info.end_time,
        "parent": r.data.tags.get(_PARENT),
        **{f"params.{k}": v for k, v in r.data.params.items()},
        **{f"tags.{k}": v for k, v in r.data.tags.items()},
        **{f"metrics.{k}": v for k, v in r.data.metrics.items()},
    } for r in runs])
    return table.set_index("run_id").sort_values("start_time", kind="stable")


def search(client: MlflowClient, experiment_id: str, filter_string: str) -> list:
    runs: list = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _nothing_found(client: MlflowClient, experiment_id: str, experiment: str,
                   parent: str | None, since: datetime | None) -> str:
    if parent is not None:
        sweeps = search(client, experiment_id, "tags.kind = 'sweep'")
        listed = ", ".join(f"{s.info.run_id} ({s.info.run_name})" for s in sweeps) or "(none)"
        return (f"no FINISHED runs of parent run {parent!r} in experiment {experiment!r}; "
                f"its sweeps: {listed}")
    when = f" since {since:%Y-%m-%d %H:%M}" if since is not None else ""
    ranked = len(client.search_runs([experiment_id], "tags.kind = 'rank'", max_results=1000))
    scores = (f" (its {ranked} rank runs are scores, not results: `xferlab report --rank` sets "
              "them beside fine-tuned runs)" if ranked else "")
    return (f"no FINISHED runs in experiment {experiment!r}{when}{scores}: run `xferlab train "
            f"tracking.experiment={experiment} ...` first")


def parse_since(text: str) -> datetime:
    """A date (2026-11-01), a time (2026-11-01T14:30) or an age (90m, 36h, 7d, 2w)."""
    age = re.fullmatch(r"(\d+)([mhdw])", text.strip())
    if age:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[age[2]]
        return datetime.now() - timedelta(**{unit: int(age[1])})
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--since {text!r} is neither a date nor an age: give e.g. 2026-11-01, "
                          "2026-11-01T14:30, 36h or 7d") from None


def resolve(frame: pd.DataFrame, key: str, flag: str) -> str:
    """The column a key names: a config group (`freeze` -> tag `choice.freeze`), a param
    (`data.fraction`), else a tag; `params.x` and `tags.x` are taken as written."""
    explicit = [key] if key.startswith(("params.", "tags.")) else []
    for column in [*explicit, f"tags.choice.{key}", f"params.{key}", f"tags.{key}"]:
        if column in frame.columns:
            return column
    groups = _names(frame, "tags.choice.")
    params = _names(frame, "params.")
    raise ReportError(f"{flag} {key!r} is neither a config group, a param nor a tag of these runs"
                      f"{_did_you_mean(key, groups + params + _names(frame, 'tags.'))}; "
                      f"config groups: {', '.join(groups) or '(none)'}; "
                      f"params: {', '.join(params) or '(none)'}")


def resolve_metric(frame: pd.DataFrame, metric: str) -> str:
    column = f"metrics.{metric}"
    if column not in frame.columns or frame[column].isna().all():
        metrics = [m for m in _names(frame, "metrics.") if frame[f"metrics.{m}"].notna().any()]
        raise ReportError(f"--metric {metric!r} is not logged by these runs"
                          f"{_did_you_mean(metric, metrics)}; metrics: "
                          f"{', '.join(metrics) or '(none)'}")
    return column


def where(frame: pd.DataFrame, clause: str) -> pd.DataFrame:
    """The runs a `KEY=VALUE` or `KEY!=VALUE` clause keeps; numbers compare as numbers."""
    key, op, value = parse_where(clause)
    column = resolve(frame, key, "--where")
    same = frame[column].map(lambda v: same_value(v, value))
    kept = frame[same if op == "=" else ~same]
    if kept.empty:
        values = ", ".join(ordered(frame[column].dropna()))
        raise ReportError(f"--where {clause!r} keeps no run; {key} takes: {values}")
    return kept


def parse_where(clause: str) -> tuple[str, str, str]:
    """A `--where` clause as (key, `=` or `!=`, value)."""
    parsed = re.fullmatch(r"\s*([^!=\s]+)\s*(!=|=)\s*(.*?)\s*", clause)
    if parsed is None:
        raise ReportError(f"--where {clause!r} is not KEY=VALUE or KEY!=VALUE: give e.g. "
                          "--where backbone.name=resnet18")
    return parsed[1], parsed[2], parsed[3]


def same_value(logged: object, wanted: str) -> bool:
    if not isinstance(logged, str):
        return False
    return logged == wanted or (is_number(logged) and is_number(wanted)
                                and float(logged) == float(wanted))


def ordered(values: pd.Series) -> list[str]:
    """Distinct values, numerically if all are numbers, else in the order runs started
    (a sweep's own order: `freeze=linear_probe,full,scratch`)."""
    distinct = list(dict.fromkeys(values))
    return sorted(distinct, key=float) if all(map(is_number, distinct)) else distinct


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _names(frame: pd.DataFrame, prefix: str) -> list[str]:
    return sorted(c.removeprefix(prefix) for c in frame.columns if c.startswith(prefix))


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
