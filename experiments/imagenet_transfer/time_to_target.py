"""Time as well as data: how long each strategy takes to first reach a validation accuracy.

Reads the study's FINISHED runs at one labelled fraction from the MLflow store: per run, each
validation's `val/acc` (step = epoch, counted from 1; runs logged before xferlab counted from 1
start at step 0) and when it was logged. Wall time is the time from the
run's start to that validation, as the researcher waits for it: training steps, feature
extraction and validation included. Writes a Markdown table and an accuracy-vs-wall-time plot.

    python experiments/imagenet_transfer/time_to_target.py --experiment imagenet_transfer \
        --where data.name=animal_mnist --fraction 1.0 --target 0.9 --out time.md --plot time.png
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from xferlab import figures
from xferlab.report import load
from xferlab.tracking import resolve_uri

ORDER = ["scratch", "linear_probe", "last_k", "lp_ft", "full"]  # the study's, least retrained first


def curves(client: MlflowClient, experiment: str, where: dict[str, str], fraction: float):
    """strategy -> list of (seconds since start, steps, val/acc) arrays, one per result run
    (sweep parents, which log the swept values, are left out), and those runs' frame."""
    runs = load(client, experiment)
    keep = runs["params.data.fraction"].astype(float) == fraction
    if "params.data.shots" in runs:  # a fraction, not a number of shots per class
        keep &= runs["params.data.shots"].isin(["None"]) | runs["params.data.shots"].isna()
    for key, value in where.items():
        keep &= runs.get(f"params.{key}") == value
    runs = runs[keep]
    found = defaultdict(list)
    for run_id, run in runs.iterrows():
        history = sorted(client.get_metric_history(run_id, "val/acc"), key=lambda m: m.step)
        if not history:
            continue
        seconds = np.array([(m.timestamp - run["start_time"]) / 1000 for m in history])
        first = history[0].step  # 1, or 0 in runs logged while steps counted epochs from 0
        steps = np.array([(m.step - first + 1) * int(run["params.trainer.steps_per_epoch"])
                          for m in history])
        acc = np.array([m.value for m in history])
        found[run["params.freeze.strategy"]].append((seconds, steps, acc))
    return found, runs


def first_reach(curve, target: float) -> tuple[float, float] | None:
    """(seconds, steps) of the first validation at or above `target`, or None."""
    seconds, steps, acc = curve
    hit = np.flatnonzero(acc >= target)
    return (seconds[hit[0]], steps[hit[0]]) if len(hit) else None


def table(found, targets: dict[str, float]) -> str:
    head = "| strategy | runs | best val/acc |" + "".join(
        f" {name}: steps | {name}: wall s |" for name in targets)
    lines = [head, "|---|--:|--:|" + "--:|--:|" * len(targets)]
    for strategy in [s for s in ORDER if s in found]:
        runs = found[strategy]
        best = [c[2].max() for c in runs]
        cells = [strategy, str(len(runs)), f"{np.mean(best):.3f} ± {np.std(best, ddof=1):.3f}"
                 if len(best) > 1 else f"{best[0]:.3f}"]
        for target in targets.values():
            reached = [r for c in runs if (r := first_reach(c, target))]
            if not reached:
                cells += ["not reached", "—"]
                continue
            secs, steps = np.array([r[0] for r in reached]), np.array([r[1] for r in reached])
            note = f" ({len(reached)}/{len(runs)} runs)" if len(reached) < len(runs) else ""
            cells += [f"{steps.mean():.0f}{note}", f"{secs.mean():.0f} ± {secs.std(ddof=1):.0f}"
                      if len(secs) > 1 else f"{secs[0]:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@figures.styled
def figure(found, target: float, title: str, caption: str):
    fig = figures.figure(6.4, 4.2)
    ax = fig.subplots()
    names = [s for s in ORDER if s in found]
    for strategy, style in zip(names, figures.styles(["freeze"], [(s,) for s in names]),
                               strict=True):
        for i, (seconds, _, acc) in enumerate(found[strategy]):
            ax.plot(seconds, acc, markersize=3, linewidth=1, alpha=0.8, **style,
                    label=figures.value_label("freeze", strategy) if i == 0 else None)
    ax.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target {target:g}")
    ax.set_xlabel("wall time since the run started (s)")
    ax.set_ylabel(figures.label("val/acc"))
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right", title=figures.label("freeze"))
    return figures.caption(fig, caption)


def caption(runs) -> str:
    """Data, backbone, runs per strategy and commit of the runs drawn."""
    per = runs.groupby("params.freeze.strategy").size()
    n = f"{per.min()}" if per.min() == per.max() else f"{per.min()} to {per.max()}"
    commits = zip(runs["tags.git.commit"], runs["tags.git.dirty"] == "True", strict=True)
    return figures.caption_line(
        data=", ".join(runs["params.data.name"].unique()),
        backbone=", ".join(runs["params.backbone.name"].unique()),
        seeds=f"n = {n} runs per strategy (seed)", commit=figures.commit_text(commits))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--where", action="append", default=[], help="param=value, repeatable")
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path, required=True)
    args = ap.parse_args()
    client = MlflowClient(resolve_uri(None))
    where = dict(w.split("=", 1) for w in args.where)
    found, runs = curves(client, args.experiment, where, args.fraction)
    if not found:
        raise SystemExit(f"no FINISHED runs at data.fraction={args.fraction} in {args.experiment}")
    scratch_best = float(np.mean([c[2].max() for c in found.get("scratch", [])] or [np.nan]))
    targets = {f"val/acc ≥ {args.target:g}": args.target}
    if not np.isnan(scratch_best):
        targets[f"scratch's best ({scratch_best:.3f})"] = scratch_best
    args.out.write_text(table(found, targets) + "\n")
    title = (f"{where.get('data.name', '')}, {figures.label('data.fraction')} "
             f"{args.fraction:g}: validation accuracy vs wall time, "
             f"{sum(map(len, found.values()))} runs")
    figures.save(figure(found, args.target, title, caption(runs)), args.plot)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
