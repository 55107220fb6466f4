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
  report     ablation tables from an experiment's finished runs: mean ± std, n, 95% CI
             e.g. xferlab report --experiment xferlab --rows freeze --cols data.fraction
  tune       an Optuna search whose trials are train runs: pruning, resume, several workers
             e.g. xferlab tune search=lr_wd freeze=full tune.trials=40 tune.workers=2
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
    commands = {"train": _train, "pretrain": _pretrain, "report": _report, "tune": _tune,
                "ui": _ui}
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
    return launch("train", args)


def _pretrain(args: list[str]) -> int:
    if not any(a.startswith("experiment=") for a in args):
        args = ["experiment=source_glyphs", *args]
    return launch("pretrain", args)


def _tune(args: list[str]) -> int:
    from xferlab.recipes import tune

    return tune.main(args)


def launch(recipe: str, args: list[str]) -> int:
    """Check every job of the launch, build the sources the jobs need, open a parent run for a
    multirun, then hand over to Hydra. Config errors answer before torch is imported."""
    import importlib

    from xferlab.config import ConfigError
    from xferlab.recipes import compose

    info = any(a in _HYDRA_INFO_FLAGS for a in args)
    multirun = "-m" in args or "--multirun" in args
    overrides = _overrides(args)
    try:
        jobs = [] if info else compose.job_overrides(overrides, multirun)
        configs = [compose.compose(job) for job in jobs]
        problems = list(dict.fromkeys(p for cfg in configs for p in compose.check(cfg)))
        if problems:
            raise ConfigError(problems)
    except ConfigError as err:
        return max(_user_error(line) for line in err.problems)
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


def _arg_parser(prog: str, description: str):
    """argparse, but a usage error is one `xferlab: error:` line and exit code 2, like the rest."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):
            _user_error(f"{prog}: {message}; see `{prog} --help`")
            sys.exit(2)

    return Parser(prog=prog, description=description)


def _user_error(message: str) -> int:
    print(f"xferlab: error: {message}", file=sys.stderr)
    return 2


def _report(args: list[str]) -> int:
    from pathlib import Path

    def keys(text: str) -> list[str]:
        return [k.strip() for k in text.split(",") if k.strip()]

    parser = _arg_parser("xferlab report", "Ablation table of an experiment's FINISHED runs in "
                         "the MLflow store: a metric by row and column keys, over seeds: mean ± "
                         "std [95% bootstrap CI] (n). A key is a config group (freeze: the tag "
                         "choice.freeze), a param (data.fraction) or a tag.")
    parser.add_argument("--experiment", required=True, metavar="NAME",
                        help="the MLflow experiment (the study)")
    parser.add_argument("--rows", required=True, type=keys, action="extend", metavar="KEYS",
                        help="row keys, comma-separated or repeated, e.g. freeze")
    parser.add_argument("--cols", type=keys, action="extend", default=[], metavar="KEYS",
                        help="column keys, e.g. data.fraction")
    parser.add_argument("--metric", default="test/acc", metavar="NAME", help="default: test/acc")
    parser.add_argument("--seeds", type=keys, default=["seed", "data.subset_seed"],
                        metavar="KEYS", help="keys that only replicate a run: averaged over, "
                        "paired on (default: seed,data.subset_seed)")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="keep runs with KEY=VALUE (or KEY!=VALUE); repeatable")
    parser.add_argument("--since", metavar="WHEN",
                        help="runs started since a date (2026-11-01) or an age (36h, 7d)")
    parser.add_argument("--parent", metavar="RUN_ID",
                        help="one sweep only: its parent run id, or `latest`")
    parser.add_argument("--min-n", type=int, default=3, metavar="N",
                        help="cells with fewer runs are marked † (default: 3)")
    parser.add_argument("--paired-vs", metavar="ROW",
                        help="add the difference to this row (e.g. scratch; one value per row "
                        "key, comma-separated), paired by seeds")
    parser.add_argument("--ignore", type=keys, action="extend", default=[], metavar="KEYS",
                        help="params whose differences cannot matter (not confounders)")
    parser.add_argument("--format", choices=["md", "latex", "csv"],
                        help="default: from --out's suffix (.md, .tex, .csv), else md")
    parser.add_argument("--out", type=Path, metavar="PATH",
                        help="also write the table to this file")
    parser.add_argument("--plot", type=Path, metavar="PATH",
                        help="PNG: the metric against a numeric column key")
    parser.add_argument("--digits", type=int, default=3, metavar="N",
                        help="decimals in md and LaTeX (default: 3)")
    parser.add_argument("--log", action="store_true",
                        help="log table and plot as artifacts of the sweep's parent run")
    parser.add_argument("--uri", help="tracking URI (default: the project's store)")
    opts = parser.parse_args(args)

    from xferlab import report

    fmt = opts.format or next((f for f, suffix in report.SUFFIXES.items()
                               if opts.out and opts.out.suffix == suffix), "md")
    try:
        store = report.client(opts.uri)
        table = report.make(
            store, opts.experiment, rows=opts.rows, cols=opts.cols, metric=opts.metric,
            seeds=opts.seeds, where=opts.where, parent=opts.parent, min_n=opts.min_n,
            since=report.parse_since(opts.since) if opts.since else None,
            paired_vs=opts.paired_vs, ignore=opts.ignore)
        texts = {"md": report.markdown(table, opts.digits),
                 "latex": report.latex(table, opts.digits), "csv": report.csv(table)}
        figure = report.plot(table) if opts.plot else None
        if opts.log:
            table.sweep_parent()  # refuse before writing anything
    except report.ReportError as err:
        return _user_error(str(err))
    text = texts[fmt]
    print(text, end="")
    for warning in table.warnings:
        print(f"xferlab: warning: {warning}", file=sys.stderr)
    for path, write in ((opts.out, lambda p: p.write_text(text)),
                        (opts.plot, lambda p: figure.savefig(p, dpi=200))):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
            print(f"wrote {path}", file=sys.stderr)
    if opts.log:
        parent = report.log(store, table, texts, figure)
        print(f"logged the report to run {parent} (artifacts report/)", file=sys.stderr)
    return 0


def _ui(args: list[str]) -> int:
    """The MLflow UI on the project's store; every process it starts stops with it."""
    import os
    import signal
    import socket
    import subprocess
    from contextlib import suppress
    from pathlib import Path

    parser = _arg_parser("xferlab ui", "MLflow UI on the project's store (outputs/mlflow.db and "
                         "its artifacts, or --uri / MLFLOW_TRACKING_URI).")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--uri", default=None, help="tracking URI (default: the project's store)")
    opts = parser.parse_args(args)
    from xferlab.tracking import resolve_uri

    uri = resolve_uri(opts.uri)
    if uri.startswith(("http://", "https://")):
        return _user_error(f"{uri} is a tracking server, which serves its own UI: open it in a "
                           "browser, or give --uri the store behind it")
    # One web worker, and no job runner (a huey consumer for GenAI jobs; xferlab submits none):
    # the UI answers in about half the time (4 s instead of 7-9 s).
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", opts.host, "--port", str(opts.port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
    try:  # a taken port is the user's to fix: say so before MLflow starts and fails later
        socket.create_server((opts.host, opts.port), family=family).close()
    except OSError as err:
        return _user_error(f"cannot listen on {opts.host}:{opts.port} ({err.strerror}): pass "
                           "--port with a free port")
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///"))
        store.parent.mkdir(parents=True, exist_ok=True)
        # experiments made in the UI keep their artifacts beside the store, as `train`'s do
        cmd += ["--default-artifact-root", (store.parent / "mlartifacts").resolve().as_uri()]
    host = f"[{opts.host}]" if family == socket.AF_INET6 else opts.host
    print(f"MLflow UI for {uri} at http://{host}:{opts.port}  (Ctrl-C stops it)", flush=True)
    # Its own session: a terminal's Ctrl-C reaches only this process, which stops the server
    # once and in order; `kill` and a closed terminal stop it the same way.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()  # `mlflow ui` forwards it to its uvicorn server and waits for it
        with suppress(subprocess.TimeoutExpired, KeyboardInterrupt):  # 2nd Ctrl-C: stop now
            proc.wait(timeout=10)
        return 0
    finally:
        with suppress(ProcessLookupError):  # whatever is left of the session, e.g. a server
            os.killpg(proc.pid, signal.SIGKILL)  # whose `mlflow ui` died first
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
