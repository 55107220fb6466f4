"""`xferlab pretrain`: build a source backbone, a normal logged training run on a source set.

`xferlab train` calls `ensure` before launching, so every source its jobs need is built once,
by the launching process, before any job (or parallel worker) starts.
"""

from __future__ import annotations

import json
import sys

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from xferlab import backbones
from xferlab.files import atomic
from xferlab.recipes import common, sources, train
from xferlab.recipes.compose import CONF_DIR


def build(src_cfg: DictConfig, launch: common.Launch) -> sources.Source:
    """Train on the source set, keep the backbone (head dropped) and record where it came from."""
    from mlflow.tracking import MlflowClient

    path = sources.cache_file(src_cfg)
    Console(stderr=True).print(f"[bold]Building source[/] {path.name}: {launch.run_name(src_cfg)} "
                               f"({src_cfg.trainer.max_steps} steps, once; cached after)")
    # a FINISHED source run is no source without its weights file: always train here
    src_cfg.trainer.resume = False
    result = train.train(src_cfg, launch)
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
                todo[path] = (src_cfg, common.Launch(choices=choices, overrides=overrides))
    for src_cfg, launch in todo.values():
        build(src_cfg, launch)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    with common.one_line_errors():
        found = sources.cached(sources.cache_file(cfg))
        if found is None:
            found = build(cfg, common.Launch.from_hydra())
        print(f"source weights: {found.path}  (run {found.run_id}, digest {found.digest})")
        return 0.0


if __name__ == "__main__":
    sys.exit(main())
