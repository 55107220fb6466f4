"""`xferlab rank backbone=a,b,c [train overrides]`: score candidate backbones before training.

Each candidate (a combination of the comma-separated overrides, as in a multirun) is scored on
the target's training subset from its frozen features (through the feature cache, so a second
ranking costs only the scoring) with LogME, a k-NN accuracy and a cross-validated linear-probe
accuracy (`xferlab.scores`). Every candidate is logged as an MLflow run with the tag
`kind=rank` in the study's experiment; a ranked table is printed.
"""

from __future__ import annotations

import sys
import time
from typing import Any, cast

import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from xferlab import backbones, data, engine, features, scores, tracking
from xferlab.console import console
from xferlab.launch import common, compose
from xferlab.recipes import pretrain


def main(args: list[str]) -> int:
    with common.one_line_errors():
        jobs = compose.job_overrides(args, multirun=True)
        candidates = [compose.compose_with_choices(job) for job in jobs]
        common.check_all([cfg for cfg, _ in candidates])
        pretrain.ensure([cfg for cfg, _ in candidates])
        rows = [rank(cfg, tracking.Launch(choices=choices, overrides=job))
                for (cfg, choices), job in zip(candidates, jobs, strict=True)]
        _print(rows, varying(jobs))
    return 0


def rank(cfg: DictConfig, launch: tracking.Launch) -> dict[str, float | str]:
    """Score one candidate and log it; returns its label's overrides and scores."""
    device, bf16 = common.runtime(cfg)
    ds = common.load_data(cfg.data)
    subset, train_split = common.training_subset(cfg.data, ds)
    # placed as `train` places it, so both share cached features
    model, load_report, source, channels_last = common.placed_model(cfg, ds, device)
    mean, std = backbones.normalization(model.backbone, ds.in_chans)
    loop = engine.Loop(mean=mean, std=std, device=device, bf16=bf16, channels_last=channels_last,
                       eval_batch_size=cfg.trainer.eval_batch_size, progress=False,
                       workers=cfg.data.workers)

    started = time.perf_counter()
    cache = features.FeatureCache(model.backbone, loop)
    feats = cache(train_split.images).cpu().numpy().astype(np.float64)
    timings = {"time/features_s": time.perf_counter() - started}
    labels = train_split.labels.numpy()
    values = {}
    for name, score in scores.SCORES.items():
        started = time.perf_counter()
        try:
            values[f"rank/{name}"] = score(feats, labels)
        except ValueError as err:
            raise data.DataError(f"{cfg.data.name}: {err}") from err
        timings[f"time/{name}_s"] = time.perf_counter() - started

    tags = {**launch.tags(load_report.tags()), "kind": "rank",
            "feature_cache": f"{cache.hits} hits, {cache.misses} misses"}
    if source:
        tags.update({"source.run_id": source.run_id, "source.weights_digest": source.digest})
    name = f"rank·{cfg.backbone.name}·{cfg.backbone.pretrained}"
    with tracking.run(cfg.tracking.uri, cfg.tracking.experiment, name=name, tags=tags) as run:
        params = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))  # of a dict
        tracking.log_params(run.run_id, params, extra={
            "data.train_size": len(train_split), "data.subset_digest": data.indices_digest(subset),
            "backbone.weights_digest": load_report.digest or "none"})
        tracking.log_metrics(run.run_id, {**values, **timings,
                                               "features/dim": feats.shape[1]}, step=0)
    return {"overrides": " ".join(launch.overrides), "run_id": run.run_id, **values,
            **timings}


def varying(jobs: list[list[str]]) -> list[str]:
    """The overrides that tell candidates apart (those shared by all are left out of labels)."""
    shared = set.intersection(*(set(job) for job in jobs))
    return [" ".join(o for o in job if o not in shared) or "(default)" for job in jobs]


def _print(rows: list[dict], labels: list[str]) -> None:
    first, *_ = scores.SCORES
    table = Table(title=f"xferlab rank · sorted by {scores.SCORES[first].label} · "
                        "higher is better")
    table.add_column("candidate", overflow="fold")
    for column in (*(score.label for score in scores.SCORES.values()), "feat. s", "score s"):
        table.add_column(column, justify="right")
    for i in sorted(range(len(rows)), key=lambda i: -rows[i][f"rank/{first}"]):
        row = rows[i]
        spent = sum(row[f"time/{name}_s"] for name in scores.SCORES)
        table.add_row(labels[i], *(f"{row[f'rank/{name}']:.4f}" for name in scores.SCORES),
                      f"{row['time/features_s']:.1f}", f"{spent:.1f}")
    screen = console()
    # logs and pipes get a width that fits the labels, not the 80 columns rich assumes
    (screen if screen.is_terminal else console(width=160)).print(table)
    print("each candidate is an MLflow run tagged kind=rank; set the scores beside fine-tuned "
          "results with `xferlab report --rank`", file=sys.stderr)
