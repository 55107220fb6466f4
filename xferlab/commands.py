"""The commands that read the MLflow store: report, ui, runs; and the CLI's error helpers."""

from __future__ import annotations

import sys


def arg_parser(prog: str, description: str):
    """argparse, but a usage error is one `xferlab: error:` line and exit code 2, like the rest."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):
            user_error(f"{prog}: {message}; see `{prog} --help`")
            sys.exit(2)

    return Parser(prog=prog, description=description)


def user_error(message: str) -> int:
    print(f"xferlab: error: {message}", file=sys.stderr)
    return 2


def report(args: list[str]) -> int:
    import shlex
    from pathlib import Path

    def keys(text: str) -> list[str]:
        return [k.strip() for k in text.split(",") if k.strip()]

    parser = arg_parser("xferlab report", "Ablation table of an experiment's FINISHED runs in "
                         "the MLflow store: a metric by row and column keys, over seeds: mean ± "
                         "std [95% bootstrap CI] (n). A key is a config group (freeze: the tag "
                         "choice.freeze), a param (data.fraction) or a tag.")
    parser.add_argument("--experiment", required=True, metavar="NAME",
                        help="the MLflow experiment (the study)")
    parser.add_argument("--rows", required=True, type=keys, action="extend", metavar="KEYS",
                        help="row keys, comma-separated or repeated, e.g. freeze")
    parser.add_argument("--cols", type=keys, action="extend", default=[], metavar="KEYS",
                        help="column keys, e.g. data.fraction")
    parser.add_argument("--metric", dest="metrics", type=keys, default=["test/acc"],
                        metavar="NAMES", help="any metric the runs log; several, comma-separated, "
                        "stand side by side in each cell, e.g. test/acc,test/ece "
                        "(default: test/acc)")
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
                        help="also write the table to this file, with its provenance below it "
                        "(the command, the runs and their commits, the store, the report's "
                        "commit and date; LaTeX: as comments, CSV: none); PATH.html: one "
                        "self-contained page with the tables, the plot and the provenance")
    parser.add_argument("--append", action="store_true",
                        help="add the table to the end of --out (.md) instead of replacing it: "
                        "a report of several tables; its one provenance footer moves below "
                        "and lists every command")
    parser.add_argument("--plot", type=Path, metavar="PATH",
                        help="the metrics (a panel each) against a numeric column key: PNG "
                        "at 200 dpi, or vector for a .pdf or .svg path")
    parser.add_argument("--digits", type=int, default=3, metavar="N",
                        help="decimals in md and LaTeX (default: 3)")
    parser.add_argument("--log", action="store_true",
                        help="log table and plot as artifacts of the sweep's parent run")
    parser.add_argument("--rank", action="store_true",
                        help="rows are candidates: set the scores of their `xferlab rank` runs "
                        "(tag kind=rank) beside the fine-tuned metric and print Kendall τ and "
                        "weighted τ between each score and it, with the time each took "
                        "(Markdown); --where on a row, column, backbone or data key filters the "
                        "rank runs too")
    parser.add_argument("--uri", help="tracking URI (default: the project's store)")
    opts = parser.parse_args(args)

    from contextlib import suppress

    from xferlab import figures, report, tracking

    fmt = opts.format or next((f for f, suffix in {**report.SUFFIXES, "html": report.PAGE}.items()
                               if opts.out and opts.out.suffix == suffix), "md")
    if opts.append and (opts.out is None or fmt != "md"):
        return user_error("--append adds a table to a Markdown report: give --out PATH.md")
    if opts.rank:
        written = f"--format {fmt}" if opts.format else f"--out {opts.out} (give a .md path)"
        unsupported = [flag for flag, given in (
            (written, fmt != "md"), ("--plot", opts.plot), ("--log", opts.log),
            ("--paired-vs", opts.paired_vs)) if given]
        if unsupported:
            return user_error(f"--rank writes Markdown only: drop {', '.join(unsupported)}")
    try:
        store = report.client(opts.uri)
        tracking.warn_stale(store, opts.experiment)
        selection = {"rows": opts.rows, "cols": opts.cols, "metrics": opts.metrics,
                     "seeds": opts.seeds, "where": opts.where, "parent": opts.parent,
                     "min_n": opts.min_n, "ignore": opts.ignore,
                     "since": report.parse_since(opts.since) if opts.since else None}
        figure = shown = None
        table: report.Report | report.RankReport
        if opts.rank:  # scores beside fine-tuned results, and Kendall τ between them
            from xferlab import scores

            table = report.rank(store, opts.experiment, **selection, taus={
                "Kendall τ": scores.kendall_tau, "weighted τ": scores.weighted_tau})
            texts = {"md": report.rank_markdown(table, opts.digits)}
        else:
            table = report.make(store, opts.experiment, **selection, paired_vs=opts.paired_vs)
            texts = {"md": report.markdown(table, opts.digits),
                     "latex": report.latex(table, opts.digits), "csv": report.csv(table)}
            figure = report.plot(table) if opts.plot else None
            if fmt == "html" and figure is None:  # the page shows the plot where there is one
                with suppress(report.ReportError):
                    shown = report.plot(table)
            if opts.log:
                table.sweep_parent()  # refuse before writing anything
    except report.ReportError as err:
        return user_error(str(err))
    text = texts["md" if fmt == "html" else fmt]  # a page goes to its file, Markdown to stdout
    print(text, end="")
    mixed = report.mixed_code(table)
    for warning in [*table.warnings, *([mixed] if mixed else [])]:
        print(f"xferlab: warning: {warning}", file=sys.stderr)

    def write_out(path: Path) -> None:
        before = path.read_text() if opts.append and path.is_file() else None
        command = shlex.join(["xferlab", "report", *args])  # as typed; passwords masked
        if fmt == "html":
            assert isinstance(table, report.Report)  # --rank writes Markdown only
            path.write_text(report.page(table, figure or shown, command=command,
                                        uri=store.tracking_uri, digits=opts.digits))
            return
        path.write_text(report.with_provenance(text, fmt, table, command=command,
                                               uri=store.tracking_uri, before=before))

    def write_plot(path: Path) -> None:
        assert figure is not None  # made above whenever --plot is given
        figures.save(figure, path)

    for path, write in ((opts.out, write_out), (opts.plot, write_plot)):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
            print(f"wrote {path}", file=sys.stderr)
    if opts.log:
        assert isinstance(table, report.Report)  # --rank refuses --log above
        parent = report.log(store, table, texts, figure)
        print(f"logged the report to run {parent} (artifacts report/)", file=sys.stderr)
    return 0


def ui(args: list[str]) -> int:
    """The MLflow UI on the project's store; every process it starts stops with it."""
    import os
    import signal
    import socket
    import subprocess
    from contextlib import suppress
    from pathlib import Path

    parser = arg_parser("xferlab ui", "MLflow UI on the project's store (outputs/mlflow.db and "
                         "its artifacts, or --uri / MLFLOW_TRACKING_URI).")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--uri", default=None, help="tracking URI (default: the project's store)")
    parser.add_argument("--access-log", action="store_true",
                        help="print a line per request the server answers (default: quiet)")
    opts = parser.parse_args(args)
    from xferlab.tracking import resolve_uri, store_exists, ui_url

    uri = resolve_uri(opts.uri)
    if uri.startswith(("http://", "https://")):
        return user_error(f"{uri} is a tracking server, which serves its own UI: open it in a "
                           "browser, or give --uri the store behind it")
    # One web worker, and no job runner (a huey consumer for GenAI jobs; xferlab submits none):
    # the UI answers in about half the time (4 s instead of 7-9 s).
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", opts.host, "--port", str(opts.port), "--workers", "1"]
    if not opts.access_log:  # uvicorn's line per request buries what the user reads here
        cmd += ["--uvicorn-opts", " ".join(
            filter(None, [os.environ.get("MLFLOW_UVICORN_OPTS"), "--no-access-log"]))]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
    try:  # a taken port is the user's to fix: say so before MLflow starts and fails later
        socket.create_server((opts.host, opts.port), family=family).close()
    except OSError as err:
        return user_error(f"cannot listen on {opts.host}:{opts.port} ({err.strerror}): pass "
                           "--port with a free port")
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///"))
        store.parent.mkdir(parents=True, exist_ok=True)
        # experiments made in the UI keep their artifacts beside the store, as `train`'s do
        cmd += ["--default-artifact-root", (store.parent / "mlartifacts").resolve().as_uri()]
    address = ui_url(uri, opts.host, opts.port)
    print(f"MLflow UI for {uri} at {address}  (Ctrl-C stops it)", flush=True)
    existed = store_exists(uri)  # before the server creates it: a new store has no runs
    # Its own session: a terminal's Ctrl-C reaches only this process, which stops the server
    # once and in order; `kill` and a closed terminal stop it the same way.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    try:
        if existed:
            _print_links(uri, address)  # while the server starts
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


def _print_links(uri: str, address: str) -> None:
    """Links that open each experiment's runs table, and the newest run (and its sweep), in the
    UI's model-training mode: MLflow 3 opens an experiment on its GenAI overview otherwise."""
    import logging

    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from xferlab import tracking

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = MlflowClient(uri)
    try:
        found = [e for e in client.search_experiments(ViewType.ACTIVE_ONLY)
                 if client.search_runs([e.experiment_id], max_results=1)]
    except MlflowException as err:  # the server says why too; the UI may still serve
        print(f"xferlab: warning: cannot list the store's experiments: {err.message}",
              file=sys.stderr)
        return
    if not found:
        return
    lines = [(e.name, tracking.runs_link(address, e.experiment_id)) for e in found]
    [newest] = client.search_runs([e.experiment_id for e in found], max_results=1,
                                  order_by=["attributes.start_time DESC"])
    experiment = newest.info.experiment_id
    lines.append((f"newest run ({newest.info.run_name})",
                  tracking.run_link(address, experiment, newest.info.run_id)))
    if parent := newest.data.tags.get(MLFLOW_PARENT_RUN_ID):
        lines.append(("its sweep", tracking.run_link(address, experiment, parent)))
    width = max(len(label) for label, _ in lines)
    print("in model-training mode:\n" + "\n".join(f"  {label:<{width}}  {link}"
                                                 for label, link in lines), flush=True)


def runs(args: list[str]) -> int:
    """`xferlab runs --stale`: runs left RUNNING by a process that is gone, and how to go on."""
    parser = arg_parser("xferlab runs", "Runs in the MLflow store whose state is not what it "
                        "says: --stale lists runs left RUNNING by a process of this machine that "
                        "no longer exists (SIGKILL, out of memory, power loss).")
    parser.add_argument("--stale", action="store_true", required=True,
                        help="list RUNNING runs whose process is gone")
    parser.add_argument("--experiment", metavar="NAME", help="one experiment (default: all)")
    parser.add_argument("--mark-killed", action="store_true",
                        help="end them KILLED (their checkpoints stay: --resume still works)")
    parser.add_argument("--uri", help="tracking URI (default: the project's store)")
    opts = parser.parse_args(args)
    from mlflow.entities import RunStatus
    from mlflow.tracking import MlflowClient

    from xferlab import tracking

    uri = tracking.resolve_uri(opts.uri)
    if not tracking.store_exists(uri):
        return user_error(f"there is no MLflow store at {uri}: run from the project folder, "
                          "or give --uri")
    client = MlflowClient(uri)
    if opts.experiment:
        found = client.get_experiment_by_name(opts.experiment)
        if found is None:
            return user_error(f"--experiment {opts.experiment!r}: no such experiment in "
                              f"{client.tracking_uri}")
        ids = [found.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    stale = tracking.stale_runs(client, ids) if ids else []
    for run in stale:
        started = run.info.start_time // 1000
        kind = run.data.tags.get("kind")
        hint = ("rerun the sweep with trainer.resume=true" if kind == "sweep" else
                f"resume: xferlab train --resume {run.info.run_id}"
                if "checkpoint.path" in run.data.tags else "no checkpoint: rerun it")
        print(f"{run.info.run_id}  {run.info.run_name}  started {_when(started)}  "
              f"pid {run.data.tags.get(tracking.PID_TAG)}  {hint}")
        if opts.mark_killed:
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
    verb = "marked KILLED" if opts.mark_killed else "left RUNNING by a process that is gone"
    print(f"{len(stale)} stale run(s) {verb}", file=sys.stderr)
    return 0


def _when(seconds: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")

