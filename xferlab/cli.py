"""`xferlab <command>`: the dispatcher. Heavy imports happen only inside the command that runs."""

from __future__ import annotations

import difflib
import sys

USAGE = """usage: xferlab <command> [options] [hydra overrides]

commands:
  train      one fine-tuning run; `-m` runs a Hydra multirun grid
             e.g. xferlab train freeze=linear_probe data.fraction=0.05 seed=1
                  xferlab train -m freeze=linear_probe,full data.fraction=0.05,1.0
  pretrain   build a source backbone on the glyphs source task (train builds it when needed)
             e.g. xferlab pretrain backbone.name=resnet18
  ui         the MLflow UI on the project's store (127.0.0.1 by default)

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
    commands = {"train": _train, "pretrain": _pretrain, "ui": _ui}
    if command not in commands:
        match = difflib.get_close_matches(command, list(commands), n=1)
        hint = f" (did you mean '{match[0]}'?)" if match else ""
        print(f"xferlab: error: unknown command {command!r}{hint}; see `xferlab --help`",
              file=sys.stderr)
        return 2
    return commands[command](args)


def _overrides(args: list[str]) -> list[str]:
    """The override arguments, skipping Hydra's flags and their values."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in _HYDRA_VALUE_FLAGS:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _train(args: list[str]) -> int:
    from xferlab.recipes import pretrain, train

    return launch(train.main, args, before=pretrain.ensure)


def _pretrain(args: list[str]) -> int:
    from xferlab.recipes import pretrain

    if not any(a.startswith("experiment=") for a in args):
        args = ["experiment=source_glyphs", *args]
    return launch(pretrain.main, args)


def launch(hydra_main, args: list[str], before=None) -> int:
    """Check every job of the launch, open a parent run for a multirun, then hand over to Hydra."""
    from xferlab.recipes import common, compose

    if any(a in _HYDRA_INFO_FLAGS for a in args):
        return _run_hydra(hydra_main, args)
    multirun = "-m" in args or "--multirun" in args
    overrides = _overrides(args)
    try:
        jobs = compose.job_overrides(overrides, multirun)
        configs = [compose.compose(job) for job in jobs]
        problems = list(dict.fromkeys(p for cfg in configs for p in common.preflight(cfg)))
        if problems:
            raise common.config.ConfigError(problems)
        if before is not None:  # e.g. build the sources the jobs need, once, before any job
            before(configs)
    except common.USER_ERRORS as err:
        common.exit_user_error(err)
    if not multirun:
        return _run_hydra(hydra_main, args)
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
                                         "overrides": " ".join(overrides)})
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


def _ui(args: list[str]) -> int:
    import argparse
    import os
    import subprocess

    parser = argparse.ArgumentParser(prog="xferlab ui", description="MLflow UI on the project's "
                                     "store (outputs/mlflow.db, or --uri / MLFLOW_TRACKING_URI).")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--uri", default=None, help="tracking URI (default: the project's store)")
    opts = parser.parse_args(args)
    from xferlab.tracking import resolve_uri

    uri = resolve_uri(opts.uri)
    print(f"MLflow UI for {uri} at http://{opts.host}:{opts.port}  (Ctrl-C stops it)")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", opts.host,
           "--port", str(opts.port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, 2)
        return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
