"""feature_cache: a linear-probe run with the frozen-feature cache vs the same run without it.

Both are whole `xferlab train` runs in this process (data, model, MLflow logging, test and
artifacts included) on the embedded default: resnet18 from the glyphs source, `digits` at 100%,
`freeze=linear_probe`, 20 epochs. The cache is warmed by one run first (reported as `cold_s`),
as it is by the first run of a sweep; then cache-off and cache-on runs alternate. Prints
`RESULT feature_cache ratio=<off / on> ...` (target: >= 10, identical accuracy).

    python experiments/benchmarks/feature_cache.py [--epochs 20] [--repeats 3] [overrides...]
"""

from __future__ import annotations

from _bench import arguments, interleaved, result, train_run


def main() -> None:
    args = arguments(__doc__, repeats=3, epochs=20)
    base = ["freeze=linear_probe", "data.fraction=1.0", f"trainer.epochs={args.epochs}",
            "trainer.progress=false", "tracking.experiment=benchmarks", *args.overrides]
    accuracies = set()

    def run(cache: str) -> float:
        seconds, outcome = train_run([*base, f"trainer.feature_cache={cache}"])
        accuracies.add(round(outcome.test_acc, 6))
        return seconds

    cold = run("auto")
    times = interleaved({"off": lambda: run("off"), "on": lambda: run("auto")}, args.repeats)
    result("feature_cache", times["off"] / times["on"], off_s=times["off"], on_s=times["on"],
           cold_s=cold, identical_acc=len(accuracies) == 1, test_acc=accuracies.pop(),
           epochs=args.epochs, repeats=args.repeats)


if __name__ == "__main__":
    main()
