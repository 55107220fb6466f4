"""`xferlab <command>`: the dispatcher. Heavy imports happen only inside the command that runs."""

from __future__ import annotations

import os
import sys

from xferlab import commands
from xferlab.console import StdoutClosed

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

# The help of the commands whose module imports torch: answered here, before it loads.
TUNE_USAGE = """usage: xferlab tune search=<name> [tune.<key>=<value> ...] [train overrides ...]

Searches the space of conf/search/<name>.yaml (or search=<path>.yaml) with Optuna. Each trial is
an `xferlab train` run with the train overrides plus the trial's, a child of the study's MLflow
run. Running the same command again resumes the study up to tune.trials.

tune keys:
  tune.trials=20        the study's total (failed trials are replaced, not counted)
  tune.workers=1        worker processes on this machine
  tune.timeout=null     seconds after which this launch starts no new trial
  tune.study=null       the study's name (default: <search>-<tracking.experiment>)
  tune.storage=null     a journal file path (default outputs/tune/<study>.journal) or an RDB URL
                        (postgresql://..., shared by workers on several machines)
  tune.max_failures=3   failed trials after which this launch stops
  tune.seed=null        the samplers' seed (a number makes the search repeatable)
  tune.sampler, tune.pruner   override the search file's (tpe random cmaes grid nsga2; median
                        hyperband none)

e.g. xferlab tune search=lr_wd freeze=full tune.trials=40 tune.workers=2
"""
RANK_USAGE = """usage: xferlab rank <overrides with comma-separated candidates>

Scores each candidate backbone on the target's training data from frozen features:
LogME (rank/logme), k-NN accuracy (rank/knn) and a 5-fold linear probe (rank/linear_probe).
Each candidate is an MLflow run tagged kind=rank; `xferlab report --rank` compares the scores
with fine-tuned results (Kendall tau).

e.g. xferlab rank backbone=resnet18,vit_tiny,resnet_tiny
     xferlab rank backbone.pretrained=source:glyphs,none data.fraction=0.1
     xferlab rank 'backbone.source_overrides=[trainer.max_steps=200],[]'
"""
HELP_FLAGS = ("-h", "--help")


def main(argv: list[str] | None = None) -> int:
    """The command's exit code; a closed stdout (`xferlab train --help | head -1`) ends it
    quietly with 0: its reader has what it wanted."""
    try:
        code = _main(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()  # here, where a closed pipe can be caught, not at exit
        return code
    except BrokenPipeError:
        # what is still buffered goes nowhere, instead of failing again when Python exits
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, args = argv[0], argv[1:]
    handlers = {"train": _train, "pretrain": _pretrain, "report": commands.report,
                "tune": _tune, "rank": _rank, "ui": commands.ui, "runs": commands.runs}
    if command not in handlers:
        from xferlab.config import close_match

        return commands.user_error(f"unknown command {command!r}"
                                   f"{close_match(command, list(handlers))}; see `xferlab --help`")
    try:
        return handlers[command](args)
    except StdoutClosed:  # `xferlab train | head -1`: the user has what they wanted
        print("xferlab: stdout was closed by its reader: stopped; a run this cut is KILLED",
              file=sys.stderr)
        raise BrokenPipeError from None  # main drops what stdout still holds, and exits 0
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (tracking.run raises it for that too)
        # the run it stopped is already marked KILLED; the traceback would only hide that
        signal_name = "Ctrl-C" if str(err) in ("", "SIGINT") else str(err)
        print(f"xferlab: interrupted ({signal_name}): the run is KILLED; with a "
              "checkpoint, `xferlab train --resume <run id>` goes on", file=sys.stderr)
        return 130


def _train(args: list[str]) -> int:
    if "--resume" in args:
        return _resume(args)
    return _launch("train", args)


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
    from xferlab.recipes import train

    return train.resume_command(args[at + 1], rest[0].split("=", 1)[1] if rest else None)


def _pretrain(args: list[str]) -> int:
    if not any(a.startswith("experiment=") for a in args):
        args = ["experiment=source_glyphs", *args]
    return _launch("pretrain", args)


def _tune(args: list[str]) -> int:
    if any(a in HELP_FLAGS for a in args):
        print(TUNE_USAGE)
        return 0
    from xferlab.recipes import tune

    return tune.main(args)


def _rank(args: list[str]) -> int:
    if any(a in HELP_FLAGS for a in args):
        print(RANK_USAGE)
        return 0
    from xferlab.recipes import rank

    return rank.main(args)


def _launch(recipe: str, args: list[str]) -> int:
    """Check every job of the launch before torch is imported, then hand it to the recipe."""
    import importlib

    from xferlab.config import ConfigError
    from xferlab.launch import compose, jobs

    try:
        # Hydra's --help page, written without Hydra's slow walk (or None: Hydra answers)
        page = compose.help_page(recipe, args) if any(a in HELP_FLAGS for a in args) else None
        if page is not None:
            print(page)
            return 0
        prepared = jobs.prepare(recipe, args)
    except ConfigError as err:
        return max(commands.user_error(line) for line in err.problems)
    if prepared.configs and all(cfg.trainer.progress for cfg in prepared.configs):
        print("xferlab: importing torch and timm", file=sys.stderr, flush=True)  # seconds
    return importlib.import_module(f"xferlab.recipes.{recipe}").launch(prepared)


if __name__ == "__main__":
    sys.exit(main())
