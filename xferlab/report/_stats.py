"""Cells of an ablation table: n, mean, std and a seeded bootstrap CI over seeds; differences to
a baseline row, paired by seed; the checks that keep a comparison honest."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xferlab.report._runs import DERIVED, ordered

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0  # every cell resamples with the same seed: a report is reproducible cell by cell
SUMMARY = ["n", "mean", "std", "ci_low", "ci_high"]


def bootstrap_ci(values: np.ndarray) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (a single value gives a zero-width interval)."""
    rng = np.random.default_rng(SEED)
    means = rng.choice(values, size=(RESAMPLES, len(values))).mean(axis=1)
    low, high = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)


def summarize(values: np.ndarray) -> dict[str, float]:
    low, high = bootstrap_ci(values)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return {"n": len(values), "mean": float(values.mean()), "std": std,
            "ci_low": low, "ci_high": high}


def cells(tidy: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One line per combination of the keys' values that has runs: the summary of `value`."""
    lines = [{**dict(zip(keys, labels, strict=True)), **summarize(group["value"].to_numpy())}
             for labels, group in tidy.groupby(keys, sort=False)]
    return pd.DataFrame(lines, columns=[*keys, *SUMMARY])


def paired(tidy: pd.DataFrame, rows: list[str], cols: list[str], seeds: list[str],
           baseline: tuple[str, ...]) -> pd.DataFrame:
    """Per cell outside the baseline row: the summary of its differences to the baseline row's
    run with the same seeds in the same column; seeds present on one side only are left out."""
    pair_on = [*cols, *seeds]
    is_base = (tidy[rows] == pd.Series(baseline, index=rows)).all(axis=1)
    # runs sharing seeds within a cell (possible only in a confounded cell) count as their mean
    base = tidy[is_base].groupby(pair_on)["value"].mean()
    lines = []
    for labels, group in tidy[~is_base].groupby([*rows, *cols], sort=False):
        diffs = (group.groupby(pair_on)["value"].mean() - base).dropna()
        if len(diffs):
            lines.append({**dict(zip([*rows, *cols], labels, strict=True)),
                          **summarize(diffs.to_numpy())})
    return pd.DataFrame(lines, columns=[*rows, *cols, *SUMMARY])


def latest_reruns(runs: pd.DataFrame, identity: list[str]) -> pd.DataFrame:
    """Reruns of one config with the same seeds are one sample, not several: keep the latest."""
    return runs.drop_duplicates(subset=identity, keep="last")


def confounders(runs: pd.DataFrame, named: set[str], groups: set[str]) -> dict[str, list[str]]:
    """Params that differ between the runs compared although neither named (as a key, or
    ignored), nor of a named config group (`freeze` names `freeze.k`), nor derived: key -> its
    values. A run that did not log a key is no difference: runs log only the keys that apply
    to their options (a scratch run has no `backbone.pretrained`), and an option that differs
    shows in its own key."""
    found = {}
    for column in (c for c in runs.columns if c.startswith("params.")):
        key = column.removeprefix("params.")
        if key in named | DERIVED or key.split(".")[0] in groups:
            continue
        values = ordered(runs[column].dropna())
        if len(values) > 1:
            found[key] = values
    return found
