"""`xferlab train`: one fine-tuning run, read top to bottom.

data -> model (timm backbone, num_classes=0, plus a head) -> optimizer and schedule ->
epochs of train / validate under the freezing plan -> test with the best-validation weights -> log.
Returns `val/acc_best`, the objective of sweeps and searches.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf

from xferlab import (
    backbones,
    checkpoint,
    config,
    data,
    engine,
    evaluate,
    features,
    freezing,
    heads,
    optim,
    tracking,
)
from xferlab.launch import common, jobs
from xferlab.tracking import artifacts

config.register()


@dataclass
class Result:
    run_id: str
    best_val_acc: float
    test_acc: float
    model: heads.TransferModel | None  # None: trainer.resume found the run already FINISHED


def train(cfg: DictConfig, launch: tracking.Launch,
          report: Callable[[int, dict[str, float]], None] | None = None,
          resume_from: tuple[str, dict] | None = None) -> Result:
    """One run; `report(epoch, metrics)` sees every epoch (a search prunes by raising there).
    With `resume_from` (run id, checkpoint) or `trainer.resume`, an unfinished run goes on."""
    # ---- setup: refuse bad input before anything is built or logged
    problems = common.preflight(cfg)
    if problems:
        raise config.ConfigError(problems)
    device, bf16 = common.runtime(cfg, launch.parallel_jobs)
    say = common.status(cfg, launch)  # a line on each step that takes seconds

    # ---- data, before the store (a bad dataset then leaves no store behind): the full pool,
    # then the (nested, stratified) training subset
    if say:
        say(f"loading {cfg.data.name}")
    ds = common.load_data(cfg.data)
    subset, train_split = common.training_subset(cfg.data, ds)
    if say and cfg.data.eval_sets:
        say(f"building {len(cfg.data.eval_sets)} evaluation set(s) (data.eval_sets)")
    eval_sets = evaluate.build_sets(list(cfg.data.eval_sets), test=ds.test, classes=ds.classes,
                                    image_size=ds.image_size, in_chans=ds.in_chans,
                                    seed=cfg.data.seed, cache_dir=common.CACHE_DIR)

    # ---- what to resume: the run named by --resume, or the newest unfinished run of this config
    digest = config.digest(cfg)
    resume_run_id, state = resume_from or (None, None)
    if state is None and cfg.trainer.resume:
        resume_run_id, state, done = _resume_point(cfg, digest)
        if done is not None:
            return done
    if state is not None:
        print(f"xferlab: resuming run {resume_run_id} after epoch {len(state['epochs'])}",
              file=sys.stderr)

    # ---- model: backbone from its pretrained source, head, layer groups, optimizer
    model, load_report, source, channels_last = common.placed_model(cfg, ds, device, say)
    if cfg.trainer.compile:
        model.compile()  # in place: parameter names (checkpoints, layer groups) stay as they are
    groups = freezing.layer_groups(model)
    strategy = freezing.STRATEGIES.build(cfg.freeze.strategy, cfg.freeze)

    def plan_for(epoch: int) -> freezing.Plan:
        return strategy.plan(len(groups), epoch)

    o, sched = cfg.optim, cfg.sched
    opt = optim.build_optimizer(groups, name=o.name, lr=o.lr, weight_decay=o.weight_decay,
                                **{k: o[k] for k in optim.OPTIMIZERS.own_keys(o.name)})
    l2sp = cfg.optim.l2sp
    penalty = None
    if l2sp.alpha > 0 or l2sp.beta > 0:
        reg = optim.L2SP(model, alpha=l2sp.alpha, beta=l2sp.beta)
        penalty = functools.partial(reg.penalty, model)
    mean, std = backbones.normalization(model.backbone, ds.in_chans)
    loop = engine.Loop(mean=mean, std=std, device=device, bf16=bf16,
                       batch_size=cfg.trainer.batch_size,
                       eval_batch_size=cfg.trainer.eval_batch_size,
                       label_smoothing=cfg.optim.label_smoothing,
                       augment=data.AUGMENTATIONS[cfg.data.augment], penalty=penalty,
                       progress=cfg.trainer.progress, channels_last=channels_last,
                       workers=cfg.data.workers, say=say)
    schedule = engine.lr_schedule(sched.name, sched.warmup_frac,
                                  **{k: sched[k] for k in optim.SCHEDULES.own_keys(sched.name)})
    # frozen phases come first (linear_probe, lp_ft, gradual); the cache is keyed by the
    # backbone as it is now, before any of it trains
    cache = None
    if (cfg.trainer.feature_cache == "auto" and plan_for(0).backbone_frozen
            and loop.augment is None and features.deterministic(model.backbone)):
        cache = features.FeatureCache(model.backbone, loop)

    def logits_of(images: Any, frozen: bool) -> torch.Tensor:
        """The model's logits; the head's on cached features while the backbone is as cached."""
        if frozen and cache is not None:
            return engine.logits(model.head, cache(images), loop, features=True)
        return engine.logits(model, images, loop)

    # ---- track and train. The run opens on a thread while the first epoch trains (importing
    # MLflow and opening its store is a run's largest fixed cost); params and the training
    # subset are logged there as soon as it exists, and `run.run_id` waits for it
    tags = {**launch.tags(load_report.tags()), checkpoint.DIGEST_TAG: digest,
            "threads": str(torch.get_num_threads())}  # what trainer.threads gave this run
    if source:  # link the result to the run that built its source
        tags.update({"source.run_id": source.run_id, "source.weights_digest": source.digest})

    subset_digest = data.indices_digest(subset)

    def log_start(run_id: str) -> None:
        params = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))  # of a dict
        # only what applies to the chosen options: not the keys of the options not chosen
        # (glyphs' data.charset on digits), nor a pretrained source where training starts from
        # random weights
        unused = config.unused_keys(cfg)
        if not strategy.pretrained:
            unused |= {"backbone.pretrained", "backbone.source_overrides"}
        extra = {"data.train_size": len(train_split), "data.subset_digest": subset_digest}
        if load_report.digest:
            extra["backbone.weights_digest"] = load_report.digest
        if source:
            extra["source.run_id"] = source.run_id
        tracking.log_params(run_id, params, extra=extra, leave_out=unused)
        artifacts.log_subset(run_id, cfg.data.name, ds.identity, train_split.labels,
                             subset_digest, ds.num_classes)

    loop.start(train_split.images, ds.val.images, ds.test.images)  # before the run's thread
    with tracking.run(cfg.tracking.uri, cfg.tracking.experiment, name=common.run_name(launch, cfg),
                      tags={} if state else tags, parent_run_id=launch.parent_run_id,
                      run_id=resume_run_id, on_open=None if state else log_start) as run:
        # epochs the store has: on resume, those checkpointed just before a crash are logged
        # now, and those after the checkpoint (checkpoint_every > 1) are not logged twice
        logged = tracking.log_missing_epochs(run.run_id, state["epochs"]) if state else set()
        curves: set[str] = set()  # the metrics logged every epoch

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            if cfg.trainer.eval_every_epoch and eval_sets:
                frozen = plan_for(epoch).backbone_frozen and all(
                    plan_for(e).backbone_frozen for e in range(epoch))
                metrics = {**metrics, **evaluate.set_metrics(
                    functools.partial(logits_of, frozen=frozen), eval_sets)}
            if epoch + 1 not in logged:  # steps count epochs from 1, as the console does
                tracking.log_metrics(run.run_id, metrics, step=epoch + 1)
            curves.update(metrics)
            if report is not None:
                report(epoch, metrics)

        tagged = state is not None  # a resumed run was found through its checkpoint tag
        yaml = OmegaConf.to_yaml(cfg, resolve=True)

        def save(fit_state: dict) -> None:
            nonlocal tagged
            ckpt = checkpoint.path_for(run.run_id)
            if not tagged:  # once, and before the file: a kill in between must not hide it
                tracking.set_tags(run.run_id, {checkpoint.PATH_TAG: str(ckpt)})
                tagged = True
            checkpoint.save(ckpt, {**fit_state, "config": yaml, "run_id": run.run_id})

        try:
            history = engine.fit(
                model, groups=groups, plan_for=plan_for, optimizer=opt,
                train=(train_split.images, train_split.labels),
                val=(ds.val.images, ds.val.labels), loop=loop, epochs=cfg.trainer.epochs,
                max_steps=cfg.trainer.max_steps, steps_per_epoch=cfg.trainer.steps_per_epoch,
                base_lr=cfg.optim.lr, schedule=schedule, seed=cfg.seed, on_epoch=on_epoch,
                features=cache, checkpoint=save, checkpoint_every=cfg.trainer.checkpoint_every,
                resume=state,
            )
        except tracking.StopRun:  # e.g. a pruned trial: it ends FINISHED, nothing to resume
            checkpoint.path_for(run.run_id).unlink(missing_ok=True)
            raise

        # ---- test and the evaluation sets with the best-validation weights (through the
        # cache if they never moved)
        model.load_state_dict(history.best_state)
        if say:
            sets = f" and {len(eval_sets)} evaluation set(s)" if eval_sets else ""
            say(f"evaluating the best weights on val and test "
                f"({len(ds.val) + len(ds.test)} images){sets}")
        frozen = cache is not None and all(plan_for(e).backbone_frozen
                                           for e in range(len(history.epochs)))
        final = evaluate.evaluate_final(functools.partial(logits_of, frozen=frozen),
                                        val=ds.val, test=ds.test, sets=eval_sets)
        run_id = run.run_id
        if cache is not None:
            tracking.set_tags(run_id,
                              {"feature_cache": f"{cache.hits} hits, {cache.misses} misses"})
        summary = {**final.metrics, "best/val_acc": history.best_val_acc,
                   "best/epoch": history.best_epoch,
                   "params/total": sum(p.numel() for p in model.parameters())}
        # at step 0, before the epochs' steps 1..n: MLflow's run page draws a metric whose last
        # step is 0 as a bar showing its value, not as a one-point curve. A curve's final value
        # (an evaluation set measured every epoch too) ends its curve: its latest value is final
        tracking.log_metrics(run_id, {k: v for k, v in summary.items() if k not in curves},
                             step=0)
        if ends := {k: v for k, v in summary.items() if k in curves}:
            tracking.log_metrics(run_id, ends, step=len(history.epochs))
        with tempfile.TemporaryDirectory() as tmp:
            # backbone and head apart: the backbone file loads as `mlflow:` or `file:` weights
            backbones.save_backbone(model.backbone, Path(tmp) / "backbone.safetensors")
            backbones.save_backbone(model.head, Path(tmp) / "head.safetensors")
            artifacts.log_run_artifacts(
                run_id, Path(tmp), cfg=yaml, overrides=launch.overrides,
                history=history.epochs, labels=ds.test.labels, pred=final.pred,
                classes=ds.classes, figures={"plots/reliability.png": lambda: (
                    evaluate.reliability_figure(final.before, final.after))},
            )
    checkpoint.path_for(run_id).unlink(missing_ok=True)  # FINISHED: the weights are artifacts
    test_acc = final.metrics["test/acc"]
    common.print_summary(common.run_name(launch, cfg), cfg, run_id, test_acc, history)
    return Result(run_id, history.best_val_acc, test_acc, model)


def _resume_point(cfg: DictConfig, digest: str) -> tuple[
        str | None, dict | None, Result | None]:
    """trainer.resume=true: the newest unfinished run of this config and its checkpoint; or the
    Result of this config if it already FINISHED."""
    from mlflow.tracking import MlflowClient

    experiment_id = tracking.setup(cfg.tracking.uri, cfg.tracking.experiment)
    client = MlflowClient()
    found = checkpoint.resumable(client, experiment_id, digest)
    if found is not None:
        return found.info.run_id, checkpoint.load(Path(found.data.tags[checkpoint.PATH_TAG])), None
    done = checkpoint.finished(client, experiment_id, digest)
    if done is not None:  # e.g. a job of a sweep that is being resumed
        print(f"xferlab: trainer.resume=true: this config already FINISHED as run "
              f"{done.info.run_id}: nothing to do", file=sys.stderr)
        return None, None, Result(done.info.run_id, done.data.metrics["best/val_acc"],
                                  done.data.metrics["test/acc"], model=None)
    print("xferlab: trainer.resume=true, but no unfinished run of this config has a "
          "checkpoint here: starting a new run", file=sys.stderr)
    return None, None, None


def resume(run_id: str, uri: str | None) -> Result:
    """`xferlab train --resume <run id>`: go on with the run's own config from its checkpoint."""
    uri = tracking.resolve_uri(uri)
    if not tracking.store_exists(uri):
        raise checkpoint.CheckpointError(f"--resume {run_id}: there is no MLflow store at {uri}: "
                                         "run from the project folder, or give tracking.uri=")
    from mlflow.tracking import MlflowClient

    state = checkpoint.load(checkpoint.for_run(MlflowClient(uri), run_id))
    # over the schema: a key added since the checkpoint was written gets its default
    schema = OmegaConf.structured(config.make_schema())  # with the plugins' options' keys
    cfg = cast(DictConfig, OmegaConf.merge(schema, OmegaConf.create(state["config"])))  # dicts
    cfg.tracking.uri = uri  # the store the run was found in, whatever its config said
    return train(cfg, tracking.Launch(), resume_from=(run_id, state))


def job(cfg: DictConfig, sweep: jobs.Sweep | None) -> float:
    """One job of `xferlab train` under Hydra."""
    with common.one_line_errors():
        return train(cfg, common.launch_from_hydra(sweep)).best_val_acc


def launch(prepared: jobs.Jobs) -> int:
    """`xferlab train [-m] <overrides>`, its configs checked: what only torch can see checked
    too, every source the jobs need built once (before any parallel job starts), then Hydra."""
    from xferlab.recipes import pretrain  # it trains its sources with this module's `train`

    if not prepared.info:
        with common.one_line_errors():
            common.check_all(prepared.configs)
            pretrain.ensure(prepared.configs)
    return jobs.hand_over(job, prepared)


def resume_command(run_id: str, uri: str | None) -> int:
    """`xferlab train --resume <run id> [tracking.uri=<store>]`."""
    with common.one_line_errors():
        resume(run_id, uri)
    return 0


if __name__ == "__main__":
    sys.exit(jobs.run_hydra(jobs.hydra_main(job), sys.argv[1:]))
