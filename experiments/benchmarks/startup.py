"""startup: time from `xferlab train` launch to its first training step vs `import torch, timm`.

The train run is the embedded default (resnet18 from the glyphs source, digits) logging to a
store that already exists, as on any day but the first. The first step is caught by a
`sitecustomize` on the child's path that wraps `Optimizer.zero_grad` (called first thing in a
step) to print the elapsed time and exit at once. The two commands alternate; prints
`RESULT startup ratio=<xferlab / import> ...` (target: <= 1.5).

    python experiments/benchmarks/startup.py [--repeats 5] [overrides...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import arguments, interleaved, result

HOOK = '''
import os, sys, time
import torch

def first_step(self, *args, **kwargs):
    print(f"FIRST_STEP {time.time() - float(os.environ['BENCH_T0']):.3f}", file=sys.stderr,
          flush=True)
    os._exit(0)

torch.optim.Optimizer.zero_grad = first_step
'''


def to_first_step(command: list[str], hook_dir: str) -> float:
    env = {**os.environ, "PYTHONPATH": hook_dir, "BENCH_T0": repr(time.time())}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    marks = [line for line in done.stderr.splitlines() if line.startswith("FIRST_STEP")]
    if not marks:
        sys.exit(f"no training step was reached:\n{done.stderr[-2000:]}")
    return float(marks[0].split()[1])


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def main() -> None:
    args = arguments(__doc__, repeats=5)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "sitecustomize.py").write_text(HOOK)
        store = f"tracking.uri=sqlite:///{tmp}/mlflow.db"
        train = [sys.executable, "-m", "xferlab.cli", "train", "trainer.progress=false", store,
                 *args.overrides]
        # the source is built without the hook (its first step would end the build)
        subprocess.run([sys.executable, "-m", "xferlab.cli", "pretrain", *args.overrides],
                       check=True, stdout=subprocess.DEVNULL)
        to_first_step(train, tmp)  # warm-up: creates the store
        times = interleaved({
            "xferlab": lambda: to_first_step(train, tmp),
            "import": lambda: wall([sys.executable, "-c", "import torch, timm"]),
        }, args.repeats)
    result("startup", times["xferlab"] / times["import"], xferlab_s=times["xferlab"],
           import_s=times["import"], repeats=args.repeats)


if __name__ == "__main__":
    main()
