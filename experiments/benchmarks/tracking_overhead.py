"""tracking_overhead: a run logged to MLflow vs the same run with tracking switched off.

Both are whole `xferlab train` runs in this process on the embedded default (resnet18 from the
glyphs source, digits at 100%, `freeze=full`). "Off" replaces xferlab's tracking calls (store
set-up, run start/end, params, per-epoch metrics, the dataset input, artifacts with plots and
checkpoint files, tags) by no-ops, so the difference is everything MLflow costs a run.
The variants alternate; prints `RESULT tracking_overhead ratio=<on / off> ...` (target: <= 1.03)
and `share_in_tracking_calls`, the time inside those calls over the run's, measured in the
tracked runs themselves: on a noisy machine it is the steadier figure.

    python experiments/benchmarks/tracking_overhead.py [--epochs 10] [--repeats 3] [overrides...]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace
from unittest import mock

from _bench import arguments, interleaved, result, train_run

from xferlab import tracking
from xferlab.tracking import artifacts

# xferlab's tracking calls in a train run: (module, name, replacement when tracking is off)
CALLS = [(tracking, "setup", lambda *a, **k: "0"), (tracking, "log_params", None),
         (tracking, "log_metrics", None), (tracking, "set_tags", None),
         (artifacts, "log_subset", None), (artifacts, "log_run_artifacts", None)]


@contextmanager
def untracked_run(*args, **kwargs):
    yield SimpleNamespace(run_id="untracked")


@contextmanager
def patched(replace: dict) -> Iterator[None]:
    with ExitStack() as stack:
        for (module, name), new in replace.items():
            stack.enter_context(mock.patch.object(module, name, new))
        yield


def no_tracking():
    return patched({(m, n): new or (lambda *a, **k: None) for m, n, new in CALLS} |
                   {(tracking, "run"): untracked_run})


def timed(spent: list[float]):
    """Tracking on, with the seconds spent inside its calls (all but the run's start and end,
    a few milliseconds) added to `spent`, on either thread (the run opens on its own)."""
    def timer(call):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - started
        return wrapper

    return patched({(m, n): timer(getattr(m, n)) for m, n, _ in CALLS})


def main() -> None:
    args = arguments(__doc__, repeats=3, epochs=10)
    # no checkpoints: they are not tracking, and their run tag needs a real run
    overrides = ["freeze=full", "data.fraction=1.0", f"trainer.epochs={args.epochs}",
                 "trainer.checkpoint_every=0", "trainer.progress=false",
                 "tracking.experiment=benchmarks", *args.overrides]
    shares = []

    def tracked() -> float:
        spent = [0.0]
        with timed(spent):
            seconds = train_run(overrides)[0]
        shares.append(spent[0] / seconds)
        return seconds

    def untracked() -> float:
        with no_tracking():
            return train_run(overrides)[0]

    train_run(overrides)  # warm-up: the source, imports, the store's schema
    times = interleaved({"on": tracked, "off": untracked}, args.repeats)
    result("tracking_overhead", times["on"] / times["off"], on_s=times["on"],
           off_s=times["off"], share_in_tracking_calls=statistics.median(shares),
           epochs=args.epochs, repeats=args.repeats)


if __name__ == "__main__":
    main()
