"""`xferlab pretrain`: build a source backbone, a normal logged training run on a source set.

`xferlab train` calls `ensure` before launching, so every source its jobs need is built once,
by the launching process, before any job (or parallel worker) starts.
"""

from __future__ import annotations

import json
import sys

from omegaconf import DictConfig, OmegaConf

from xferlab import backbones, tracking
from xferlab.console import console
from xferlab.files import atomic
from xferlab.launch import common, jobs, sources
from xferlab.recipes import train


def build(src_cfg: DictConfig, launch: tracking.Launch) -> sources.Source:
    """Train on the source set, keep the backbone (head dropped) and record where it came from."""
    from mlflow.tracking import MlflowClient

    path = sources.cache_file(src_cfg)
    console(stderr=True).print(f"[bold]Building source[/] {path.name}: "
                               f"{common.run_name(launch, src_cfg)} "
                               f"({src_cfg.trainer.max_steps} steps, once; cached after)")
    # a FINISHED source run is no source without its weights file: always train here
    src_cfg.trainer.resume = False
    # SIGTERM unwinds the whole build, not only its run: a `kill` while the source set renders
    # or the weights are saved also leaves no render workers and no temporary file behind
    with tracking.sigterm_interrupts():
        result = train.train(src_cfg, launch)
        assert result.model is not None  # resume is off: the run trained, here
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = backbones.save_backbone(result.model.backbone, path)
        MlflowClient().log_artifact(result.run_id, str(path), "source")
        meta = {"run_id": result.run_id, "weights_digest": digest,
                "config": OmegaConf.to_container(src_cfg, resolve=True)}
        # the .json marks the entry complete, so it is written last and atomically
        with atomic(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
    return sources.Source(path, result.run_id, digest)


def ensure(configs: list[DictConfig]) -> None:
    """Build every source the given transfer configs need and the cache lacks."""
    todo = {}
    for cfg in configs:
        if sources.needs_source(cfg):
            src_cfg, choices, overrides = sources.source_config(cfg)
            path = sources.cache_file(src_cfg)
            if sources.cached(path) is None:
                todo[path] = (src_cfg, tracking.Launch(choices=choices, overrides=overrides))
    for path, (src_cfg, launch) in todo.items():
        try:
            build(src_cfg, launch)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (see sigterm_interrupts)
            # the source's run, if open, has ended KILLED and nothing is cached. This is the
            # launcher, outside Hydra and any run of its own: one line, no traceback, and 130
            # (128 + SIGINT), what a shell reports for an interrupted run
            why = f" ({stop})" if str(stop) else ""
            print(f"xferlab: interrupted{why} while building source "
                  f"{path.name}: nothing was cached, the next launch builds it again",
                  file=sys.stderr)
            sys.exit(130)


def job(cfg: DictConfig, sweep: jobs.Sweep | None) -> float:
    """One job of `xferlab pretrain` under Hydra."""
    with common.one_line_errors():
        found = sources.cached(sources.cache_file(cfg))
        if found is None:
            found = build(cfg, common.launch_from_hydra(sweep))
        print(f"source weights: {found.path}  (run {found.run_id}, digest {found.digest})")
        return 0.0


def launch(prepared: jobs.Jobs) -> int:
    """`xferlab pretrain <overrides>`, its configs checked: what only torch can see checked too,
    then Hydra."""
    if not prepared.info:
        with common.one_line_errors():
            common.check_all(prepared.configs)
    return jobs.hand_over(job, prepared)


if __name__ == "__main__":
    sys.exit(jobs.run_hydra(jobs.hydra_main(job), sys.argv[1:]))
