"""Surgical fine-tuning: which single block, tuned with the head, is best for which shift?

Reads the study's FINISHED `freeze=block_k` runs and the `freeze=full` runs at one labelled
fraction from the MLflow store. For every dataset and shift (its test split, then each of its
evaluation sets) it writes a Markdown table of the best block against full fine-tuning, with
the paired difference over the seeds both have, and a heatmap: block k (0 = the stem) x shift,
coloured by accuracy minus full fine-tuning's, the accuracy in each cell.

    python experiments/distribution_shift/block_heatmap.py --experiment distribution_shift \
        --fraction 1.0 --out blocks.md --plot blocks.png
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from xferlab import figures
from xferlab.tracking import resolve_uri

# the shifts shown, in order: (dataset, metric, column label)
CORRUPTIONS = ["gaussian_noise", "gaussian_blur", "contrast", "brightness", "rotate", "elastic",
               "pixelate", "jpeg"]
SHIFTS = [("animal_mnist", "test/acc", "animals: test"),
          *(("animal_mnist", f"eval/{c}-3/acc", c.replace("_", " ")) for c in CORRUPTIONS),
          ("animal_mnist", "eval/corrupt-3/acc", "all 8 (mean)"),
          ("digits", "test/acc", "digits: test"),
          ("digits", "eval/mnist_5k/acc", "→ mnist_5k")]


def accuracies(client: MlflowClient, experiment: str, fraction: float):
    """(dataset, strategy, k) -> seed -> metrics of the FINISHED runs at `fraction`, and the
    (commit, dirty) of every run."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no experiment {experiment!r} in {client.tracking_uri}")
    found: dict[tuple[str, str, int], dict[int, dict[str, float]]] = defaultdict(dict)
    commits = []
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                                  max_results=5000):
        p = run.data.params
        if float(p.get("data.fraction", "nan")) != fraction:
            continue
        strategy = p["freeze.strategy"]
        k = int(p["freeze.k"]) if strategy == "block_k" else -1
        found[p["data.name"], strategy, k][int(p["seed"])] = run.data.metrics
        commits.append((run.data.tags.get("git.commit"), run.data.tags.get("git.dirty") == "true"))
    return found, commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="distribution_shift")
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot", type=Path, required=True)
    parser.add_argument("--uri", default=None)
    args = parser.parse_args()
    found, commits = accuracies(MlflowClient(resolve_uri(args.uri)), args.experiment, args.fraction)
    blocks = sorted({k for (_, s, k) in found if s == "block_k"})
    if not blocks:
        raise SystemExit(f"no block_k runs at data.fraction={args.fraction}")

    def mean(data: str, strategy: str, k: int, metric: str, seeds=None) -> float:
        runs = found.get((data, strategy, k), {})
        values = [m[metric] for s, m in runs.items() if metric in m and (seeds is None
                                                                        or s in seeds)]
        return float(np.mean(values)) if values else float("nan")

    grid = np.array([[mean(d, "block_k", k, m) for d, m, _ in SHIFTS] for k in blocks])
    # full fine-tuning on the seeds the blocks ran with, for a paired comparison
    block_seeds = {s for (_, st, _), runs in found.items() if st == "block_k" for s in runs}
    full_paired = np.array([mean(d, "full", -1, m, block_seeds) for d, m, _ in SHIFTS])

    lines = [f"Single-block fine-tuning (`freeze=block_k`) vs full fine-tuning at "
             f"data.fraction={args.fraction:g}; block_k over seeds {sorted(block_seeds)}, "
             "full over the same seeds. Mean accuracy.", "",
             "| shift | best block k | its accuracy | full | best − full | worst block k |",
             "|---|--:|--:|--:|--:|--:|"]
    for j, (_, _, label) in enumerate(SHIFTS):
        column = grid[:, j]
        if np.isnan(column).all():
            continue
        best, worst = int(np.nanargmax(column)), int(np.nanargmin(column))
        lines.append(f"| {label} | {blocks[best]} | {column[best]:.3f} | {full_paired[j]:.3f} | "
                     f"{column[best] - full_paired[j]:+.3f} | {blocks[worst]} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    draw(grid, grid - full_paired, blocks, args.plot,
         figures.caption_line(data="animal_mnist (corruptions at severity 3), digits → mnist_5k",
                              backbone="tf_efficientnet_lite0 (ImageNet)",
                              seeds=f"seeds {sorted(block_seeds)}",
                              commit=figures.commit_text(commits),
                              more=[f"labelled fraction {args.fraction:g}"]))


@figures.styled
def draw(grid: np.ndarray, delta: np.ndarray, blocks: list[int], path: Path,
         caption: str) -> None:
    fig = figures.figure(10, 0.3 * len(blocks) + 2.4)
    ax = fig.subplots()
    bound = np.nanmax(np.abs(delta))
    image = ax.imshow(delta, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    for i in range(len(blocks)):
        for j in range(len(SHIFTS)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(len(SHIFTS)), [label for _, _, label in SHIFTS], rotation=35,
                  ha="right")
    ax.set_yticks(range(len(blocks)), ["0 (stem)" if k == 0 else str(k) for k in blocks])
    ax.grid(False)
    ax.set(ylabel="the one layer group fine-tuned, with the head",
           title="Accuracy when only group k and the head train (colour: minus full "
                 "fine-tuning's, same seeds)")
    fig.colorbar(image, ax=ax, label="accuracy − full fine-tuning")
    figures.save(figures.caption(fig, caption), path)


if __name__ == "__main__":
    main()
