"""startup: how long `xferlab train` keeps a user waiting, against `python -c "import torch, timm"`.

Both commands are timed the same way: from just before the launch to an event the process
reaches, never to its exit, so interpreter teardown counts on neither side.

- `import torch, timm`: to the end of the import (the command then writes a mark and exits).
- `xferlab train` as a user types it (the default run, or the overrides given), in a project
  folder whose MLflow store exists (a warm-up run creates it, as on any day but the first):
  - first_step: to the end of its first optimizer step. A `sitecustomize` on the child's
    path registers torch's global optimizer post-step hook, which writes the time of the
    first call to a marks file. It does so when `torch.optim.optimizer` is first imported, so
    nothing is imported earlier than the run itself would import it; the baseline carries the
    same hook.
  - visible: to the moment its run is in the store with all its params, as the MLflow UI or
    `search_runs` would show it. The run is opened on a thread while training starts, so
    this comes later than the first step: the benchmark polls the project's SQLite store
    (read-only, every 25 ms: up to 25 ms late) for a new run holding as many params as the
    warm-up's run (all of them: a run stopped after its params were logged still logs the
    rest before it ends).

Once both are seen, the run is stopped (SIGTERM: it ends KILLED) and waited for, untimed.
The two commands alternate (ABBA) `--repeats` times after one untimed run of each; prints

    RESULT startup first_step=<xferlab / import> first_step_ci=[lo,hi]
                   visible=<xferlab / import> visible_ci=[lo,hi] ...

each ratio the geometric mean of the per-repeat ratios with its 95% interval (target:
first_step <= 1.5), and the medians in seconds.

    python experiments/benchmarks/startup.py [--repeats 8] [overrides...]
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from _bench import (
    arguments,
    child_env,
    ensure_sources,
    interleaved,
    median,
    project,
    ratio,
    result,
    tail,
    xferlab,
)

POLL_S = 0.025
TIMEOUT_S = 600

HOOK = '''
import importlib.abc
import importlib.util
import os
import sys
import time

_MARKS = os.environ["BENCH_MARKS"]


def _mark(event):
    with open(_MARKS, "a") as f:
        f.write(f"{event} {time.time():.6f}\\n")


class _OnOptimizerImport(importlib.abc.MetaPathFinder):
    """Registers the post-step hook right after torch.optim.optimizer executes."""

    def find_spec(self, name, path, target=None):
        if name != "torch.optim.optimizer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        seen = []

        def after_step(optimizer, args, kwargs):
            if not seen:
                seen.append(True)
                _mark("first_step")

        def exec_module(module):
            run(module)
            module.register_optimizer_step_post_hook(after_step)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _OnOptimizerImport())
'''

IMPORT = """import torch, timm
import os, time
with open(os.environ["BENCH_MARKS"], "a") as f:
    f.write(f"imported {time.time():.6f}\\n")
"""


class Store:
    """A read-only look at a project's SQLite MLflow store."""

    def __init__(self, path: Path):
        self.path, self._db = path, None

    def _rows(self, sql: str, *args: object) -> list[tuple] | None:
        try:
            if self._db is None:
                self._db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True,
                                           timeout=POLL_S)
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error:  # not there yet, being migrated, or locked by a writer
            return None

    def run_ids(self) -> set[str]:
        return {r[0] for r in self._rows("SELECT run_uuid FROM runs") or ()}

    def params(self, known: set[str]) -> int:
        """Params of the newest run not in `known` (0 while there is none)."""
        new = self.run_ids() - known
        if not new:
            return 0
        rows = self._rows("SELECT COUNT(*) FROM params WHERE run_uuid = ?", max(new))
        return rows[0][0] if rows else 0


class Child:
    """A command launched in the project folder, and the times (seconds since the launch)
    of the events it reaches."""

    def __init__(self, command: list[str], folder: Path, env: dict[str, str]):
        self.marks, self.log = folder / "marks.txt", folder / "child.log"
        self.marks.unlink(missing_ok=True)
        self.events: dict[str, float] = {}
        self.t0 = time.time()
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, cwd=folder, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)

    def watch(self, wanted: set[str], store: Store | None = None, known: set[str] = frozenset(),
              params: int = 1) -> dict[str, float]:
        """Wait until every wanted event is seen: marks the child writes, and `visible` (a
        new run in `store` holding at least `params` params)."""
        while not wanted <= self.events.keys():
            if self.marks.is_file():
                for line in self.marks.read_text().splitlines():
                    event, at = line.split()
                    self.events.setdefault(event, float(at) - self.t0)
            if "visible" in wanted and "visible" not in self.events and store is not None:
                now = time.time()  # the store held the params when the query started
                if store.params(known) >= params:
                    self.events["visible"] = now - self.t0
            if not wanted <= self.events.keys():
                if self.process.poll() is not None:
                    sys.exit(f"the child ended (exit {self.process.returncode}) before "
                             f"{sorted(wanted - self.events.keys())}:\n{tail(self.log)}")
                if time.time() - self.t0 > TIMEOUT_S:
                    self.process.kill()
                    sys.exit(f"no {sorted(wanted - self.events.keys())} within {TIMEOUT_S} s:\n"
                             f"{tail(self.log)}")
                time.sleep(POLL_S)
        return self.events

    def stop(self) -> None:
        """SIGTERM (the run ends KILLED, its params logged) and wait, SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> None:
    args = arguments(__doc__, repeats=8)
    with project() as folder:
        ensure_sources(args.overrides, folder)  # a source build is not start-up
        (folder / "sitecustomize.py").write_text(HOOK)
        env = child_env(folder, BENCH_MARKS=str(folder / "marks.txt"))
        train = xferlab("train", *args.overrides)
        store = Store(folder / "outputs" / "mlflow.db")

        # warm-up: creates the store, and tells how many params a run of this config logs
        known = store.run_ids()
        warm = Child(train, folder, env)
        warm.watch({"first_step"})
        warm.watch({"visible"}, store, known)
        warm.stop()
        params = store.params(known)
        if not params:
            sys.exit(f"the warm-up run logged no params:\n{tail(warm.log)}")
        baseline = Child([sys.executable, "-c", IMPORT], folder, env)
        baseline.watch({"imported"})
        baseline.process.wait()

        def xferlab_train() -> dict[str, float]:
            known = store.run_ids()
            child = Child(train, folder, env)
            try:
                events = child.watch({"first_step", "visible"}, store, known, params)
            finally:
                child.stop()
            return {"first_step": events["first_step"], "visible": events["visible"]}

        def import_torch_timm() -> float:
            child = Child([sys.executable, "-c", IMPORT], folder, env)
            seconds = child.watch({"imported"})["imported"]
            child.process.wait()  # teardown, untimed
            return seconds

        samples = interleaved({"xferlab": xferlab_train, "import": import_torch_timm},
                              args.repeats)
    result("startup", first_step=ratio(samples["first_step"], samples["import"]),
           visible=ratio(samples["visible"], samples["import"]),
           first_step_s=median(samples, "first_step"), visible_s=median(samples, "visible"),
           import_s=median(samples, "import"), params=params, repeats=len(samples["import"]),
           overrides=",".join(args.overrides) or "-")


if __name__ == "__main__":
    main()
