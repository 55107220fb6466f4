"""Which `lr/…` series a run logs: one per distinct learning rate, not one per layer group.

A layer group's lr is base lr · schedule · its plan's lr scale, so two groups share their lr for
the whole run exactly when their plans give them the same scale in every epoch; plans are pure
functions of the epoch, so this is known before training. Groups that never train (scale 0 in
every epoch) log nothing.
"""

from __future__ import annotations

from collections.abc import Sequence


def lr_series(names: Sequence[str], scales: Sequence[Sequence[float]]) -> dict[str, list[str]]:
    """Metric name -> the layer groups whose lr it logs (any one of them: they are equal).

    `names` are the layer groups (the head last), `scales[epoch][group]` their plans' lr scales.
    `lr` alone when every group that trains in an epoch trains at one rate (full, linear probe,
    last k, gradual unfreezing); otherwise one series per set of groups that always share a
    scale: `lr/head`, `lr/backbone` (every backbone group that trains, e.g. LP-FT), a group's
    own name (`lr/stem`, `lr/blocks.3`, e.g. layer-wise decay), or `lr/<first>-<last>`.
    """
    trained = [g for g in range(len(names)) if any(epoch[g] for epoch in scales)]
    if all(len({epoch[g] for g in trained if epoch[g]}) <= 1 for epoch in scales):
        return {"lr": [names[g] for g in trained]}
    classes: dict[tuple[float, ...], list[int]] = {}
    for g in trained:
        classes.setdefault(tuple(epoch[g] for epoch in scales), []).append(g)
    head = len(names) - 1
    backbone = [g for g in trained if g != head]
    series = {}
    for members in classes.values():
        if len(members) == 1:
            name = names[members[0]]  # the head, or one backbone group
        elif members == backbone:
            name = "backbone"
        else:
            name = f"{names[members[0]]}-{names[members[-1]]}"
        series[f"lr/{name}"] = [names[g] for g in members]
    return series


def lr_metrics(series: dict[str, list[str]], lrs: dict[str, float]) -> dict[str, float]:
    """The epoch's value of each series, from each layer group's lr now (`lrs`); `lr` alone is
    the rate the groups that train now share (0 only when none trains)."""
    return {name: max((lrs[g] for g in groups), default=0.0) for name, groups in series.items()}
