"""`xferlab <command>`: the dispatcher. Heavy imports happen only inside the command that runs."""

from __future__ import annotations

import difflib
import sys

from xferlab import commands

USAGE = """usage: xferlab <command> [options] [hydra overrides]

commands:
  train      one fine-tuning run; `-m` runs a Hydra multirun grid
             e.g. xferlab train freeze=linear_probe data.fraction=0.05 seed=1
                  xferlab train -m freeze=linear_probe,full data.fraction=0.05,1.0
  pretrain   build a source backbone on the glyphs source task (train builds it when needed)
             e.g. xferlab pretrain backbone.name=resnet18
  report     ablation tables from an experiment's finished runs: mean ± std, n, 95% CI
             e.g. xferlab report --experiment xferlab --rows freeze --cols data.fraction
  tune       an Optuna search whose trials are train runs: pruning, resume, several workers
             e.g. xferlab tune search=lr_wd freeze=full tune.trials=40 tune.workers=2
  rank       score candidate backbones from frozen features (LogME, k-NN, linear probe)
             e.g. xferlab rank backbone=resnet18,vit_tiny backbone.pretrained=source:glyphs,none
  ui         the MLflow UI on the project's store (127.0.0.1 by default)
  runs       `xferlab runs --stale`: runs left RUNNING by a process that died (SIGKILL, OOM)
             resume one with `xferlab train --resume <run id>`

`xferlab <command> --help` shows the command's own help (for train: Hydra's, with config groups).
"""

# Hydra flags after which xferlab does not check or launch anything itself.
_HYDRA_INFO_FLAGS = {"-h", "--help", "--hydra-help", "--info", "-i", "--cfg", "-c", "--version",
                     "--shell-completion", "-sc", "--resolve"}
_HYDRA_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path",
                      "-cp", "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, args = argv[0], argv[1:]
    handlers = {"train": _train, "pretrain": _pretrain, "report": commands.report,
                "tune": _tune, "rank": _rank, "ui": commands.ui, "runs": commands.runs}
    if command not in handlers:
        match = difflib.get_close_matches(command, list(handlers), n=1)
        hint = f" (did you mean '{match[0]}'?)" if match else ""
        print(f"xferlab: error: unknown command {command!r}{hint}; see `xferlab --help`",
              file=sys.stderr)
        return 2
    return handlers[command](args)


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, flags that neither xferlab nor Hydra knows)."""
    out, unknown, skip = [], [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in _HYDRA_VALUE_FLAGS:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
        elif arg not in _HYDRA_INFO_FLAGS | {"-m", "--multirun"}:
            unknown.append(arg)
    return out, unknown


def _train(args: list[str]) -> int:
    if "--resume" in args:
        return _resume(args)
    return launch("train", args)


def _resume(args: list[str]) -> int:
    """`xferlab train --resume <run id> [tracking.uri=...]`: the run's own config goes on."""
    at = args.index("--resume")
    rest = args[:at] + args[at + 2:]
    if at + 1 >= len(args) or args[at + 1].startswith("-"):
        return commands.user_error("--resume needs a run id: xferlab train --resume <run id> "
                                   "(`xferlab runs --stale` lists them)")
    if any(not a.startswith("tracking.uri=") for a in rest):
        return commands.user_error(f"--resume continues a run with its own config: drop {rest} "
                                   "(only tracking.uri=<store> may be given)")
    from xferlab.recipes import common, train

    uri = rest[0].split("=", 1)[1] if rest else None
    with common.one_line_errors():
        train.resume(args[at + 1], uri)
    return 0


def _pretrain(args: list[str]) -> int:
    if not any(a.startswith("experiment=") for a in args):
        args = ["experiment=source_glyphs", *args]
    return launch("pretrain", args)


def _tune(args: list[str]) -> int:
    from xferlab.recipes import tune

    return tune.main(args)


def _rank(args: list[str]) -> int:
    from xferlab.recipes import rank

    return rank.main(args)


def launch(recipe: str, args: list[str]) -> int:
    """Check every job of the launch, build the sources the jobs need, open a parent run for a
    multirun, then hand over to Hydra. Config errors answer before torch is imported."""
    import importlib

    from xferlab.config import ConfigError
    from xferlab.recipes import compose

    info = any(a in _HYDRA_INFO_FLAGS for a in args)
    multirun = "-m" in args or "--multirun" in args
    overrides, unknown = _split(args)
    if unknown:  # Hydra would print its whole usage under the name cli.py
        return commands.user_error(
            f"xferlab {recipe}: unknown flag {unknown[0]!r}; config keys take no dashes, e.g. "
            f"trainer.epochs=3 (see xferlab {recipe} --help)")
    try:
        jobs = [] if info else compose.job_overrides(overrides, multirun)
        configs = [compose.compose(job) for job in jobs]
        problems = list(dict.fromkeys(p for cfg in configs for p in compose.check(cfg)))
        if problems:
            raise ConfigError(problems)
    except ConfigError as err:
        return max(commands.user_error(line) for line in err.problems)
    hydra_main = importlib.import_module(f"xferlab.recipes.{recipe}").main
    if info:
        return _run_hydra(hydra_main, args)
    from xferlab.recipes import common, pretrain

    try:
        problems = list(dict.fromkeys(p for cfg in configs for p in common.preflight(cfg)))
        if problems:
            raise ConfigError(problems)
        pretrain.ensure(configs)  # once, here, before any job or parallel worker starts
    except common.USER_ERRORS as err:
        common.exit_user_error(err)
    if not multirun:  # the run warns of stale runs itself, once it has imported MLflow
        return _run_hydra(hydra_main, args)
    commands.warn_stale(configs[0].tracking.uri, configs[0].tracking.experiment)
    return _multirun(hydra_main, args, overrides, configs)


def _multirun(hydra_main, args: list[str], overrides: list[str], configs) -> int:
    """One MLflow parent run for the sweep; each job becomes its child."""
    from datetime import datetime

    from mlflow.entities import RunStatus

    from xferlab import tracking

    sweep_id = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    first = configs[0].tracking
    parent = tracking.start_parent(first.uri, first.experiment, name=f"sweep·{sweep_id}",
                                   tags={"kind": "sweep", "sweep.id": sweep_id,
                                         "sweep.jobs": str(len(configs)),
                                         "overrides": tracking.masked(" ".join(overrides))})
    status = RunStatus.FAILED
    try:
        code = _run_hydra(hydra_main, [*args, f"hydra.sweep.dir=outputs/multirun/{sweep_id}"])
        status = RunStatus.FINISHED if code == 0 else RunStatus.FAILED
        return code
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        raise
    finally:
        tracking.end_parent(parent, RunStatus.to_string(status))


def _run_hydra(hydra_main, args: list[str]) -> int:
    saved = sys.argv
    sys.argv = [saved[0], *args]
    try:
        hydra_main()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
