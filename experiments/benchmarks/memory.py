"""memory: peak RSS of a train process on the default, and what it is made of.

Two whole processes, alternated (ABBA) --repeats times, their peak resident memory read by the
parent (`os.wait4`'s ru_maxrss):

- train: `xferlab train` on the embedded default (ImageNet EfficientNet-Lite0, animal_mnist at
  64 px, batch 64), `trainer.max_steps` steps (default 20), the test and the end-of-run artifacts
  included, in a fresh project folder;
- baseline: `import torch, timm` and the same model built (with its packaged weights).

Then one staged process says what the difference is made of: RSS after importing torch and
timm, after importing xferlab and composing the config, after loading the dataset, after
building the model, after importing MLflow and opening a store; the rest of the train
process's peak is training (activations, gradients, AdamW's two moments), evaluation and plots.
Prints

    RESULT memory ratio=<train peak / baseline peak> ci=[lo,hi] train_mib=... baseline_mib=...
    RESULT memory_parts import_mib=... xferlab_mib=... dataset_mib=... model_mib=...
        mlflow_mib=... rest_mib=...

    python experiments/benchmarks/memory.py [--repeats 4] [--steps 20] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _bench import child_env, interleaved, median, project, ratio, result, tail, xferlab

BASELINE = """
import torch, timm
from xferlab.backbones import create_backbone
from xferlab.launch.compose import compose
cfg = compose([])
create_backbone(cfg.backbone.name, pretrained=cfg.backbone.pretrained, in_chans=cfg.data.in_chans,
                image_size=cfg.data.image_size)
"""

STAGES = """
import json, sys

def rss():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]) / 1024

mib = {"start": rss()}
import torch, timm
mib["import"] = rss()
from xferlab.launch import common
from xferlab.launch.compose import compose
cfg = compose(sys.argv[1:])
mib["xferlab"] = rss()
ds = common.load_data(cfg.data)
mib["dataset"] = rss()
model = common.placed_model(cfg, ds, torch.device("cpu"))[0]
mib["model"] = rss()
from xferlab import tracking
tracking.setup(None, "memory")
mib["mlflow"] = rss()
print(json.dumps(mib))
"""


def peak_mib(command: list[str], cwd: str, log: str) -> float:
    """The peak RSS of `command` run to its end, in MiB (Linux: ru_maxrss is in KiB)."""
    with open(log, "w") as out:
        child = subprocess.Popen(command, cwd=cwd, env=child_env(), stdout=out,
                                 stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"{' '.join(command)} failed:\n{tail(Path(log))}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("overrides", nargs="*", help="more xferlab train overrides")
    args = parser.parse_args()
    train = ["train", f"trainer.max_steps={args.steps}", "trainer.progress=false",
             "tracking.experiment=memory", *args.overrides]

    def run_train() -> float:
        with project() as folder:
            return peak_mib(xferlab(*train), str(folder), str(folder / "train.log"))

    def run_baseline() -> float:
        with project() as folder:
            return peak_mib([sys.executable, "-c", BASELINE], str(folder),
                            str(folder / "baseline.log"))

    samples = interleaved({"train": run_train, "baseline": run_baseline}, args.repeats)
    train_mib, baseline_mib = median(samples, "train"), median(samples, "baseline")
    result("memory", ratio(samples["train"], samples["baseline"]),
           train_mib=round(train_mib), baseline_mib=round(baseline_mib),
           repeats=len(samples["train"]))

    with project() as folder:
        staged = subprocess.run([sys.executable, "-c", STAGES, *args.overrides], cwd=folder,
                                env=child_env(), capture_output=True, text=True, check=True)
    mib = json.loads(staged.stdout.strip().splitlines()[-1])
    result("memory_parts", python_mib=round(mib["start"]),
           import_mib=round(mib["import"] - mib["start"]),
           xferlab_mib=round(mib["xferlab"] - mib["import"]),
           dataset_mib=round(mib["dataset"] - mib["xferlab"]),
           model_mib=round(mib["model"] - mib["dataset"]),
           mlflow_mib=round(mib["mlflow"] - mib["model"]),
           rest_mib=round(train_mib - mib["mlflow"]))


if __name__ == "__main__":
    main()
