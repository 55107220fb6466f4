"""tracking_overhead: a run logged to MLflow vs the same run with tracking switched off.

Both are whole `xferlab train` runs in this process on the embedded default (resnet18 from the
glyphs source, digits at 100%, `freeze=full`). "Off" replaces xferlab's tracking calls (store
set-up, run start/end, params, per-epoch metrics, the dataset input, artifacts with plots and
checkpoint files, tags) by no-ops, so the difference is everything MLflow costs a run.
The variants alternate; prints `RESULT tracking_overhead ratio=<on / off> ...` (target: <= 1.03).

    python experiments/benchmarks/tracking_overhead.py [--epochs 3] [--repeats 3] [overrides...]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from unittest import mock

import mlflow
from _bench import arguments, interleaved, result, train_run

from xferlab import tracking
from xferlab.tracking import artifacts


@contextmanager
def no_tracking() -> Iterator[None]:
    @contextmanager
    def run(*args, **kwargs):
        yield SimpleNamespace(info=SimpleNamespace(run_id="untracked"))

    def nothing(*args, **kwargs):
        return None

    with mock.patch.multiple(tracking, setup=lambda uri, experiment: "0", run=run,
                             log_params=nothing, log_metrics=nothing), \
            mock.patch.multiple(artifacts, log_subset=nothing, log_run_artifacts=nothing), \
            mock.patch.multiple(mlflow, set_tags=nothing, set_tag=nothing):
        yield


def main() -> None:
    args = arguments(__doc__, repeats=3, epochs=3)
    overrides = ["freeze=full", "data.fraction=1.0", f"trainer.epochs={args.epochs}",
                 "trainer.progress=false", "tracking.experiment=benchmarks", *args.overrides]

    def untracked() -> float:
        with no_tracking():
            return train_run(overrides)[0]

    train_run(overrides)  # warm-up: the source, imports, the store's schema
    times = interleaved({"on": lambda: train_run(overrides)[0], "off": untracked},
                        args.repeats)
    result("tracking_overhead", times["on"] / times["off"], on_s=times["on"],
           off_s=times["off"], epochs=args.epochs, repeats=args.repeats)


if __name__ == "__main__":
    main()
