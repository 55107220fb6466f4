"""gpu: a bf16 fine-tuning step on CUDA, xferlab's loop vs a minimal loop, with TFLOP/s.

For resnet50 and vit_small_patch16_224 at 224×224 (RGB, batch 64, AdamW, random weights: the
speed does not depend on them), both loops from `loop_overhead.py` run with bf16 autocast and
channels_last, alternating (ABBA) --repeats times after one untimed run of each; the FLOPs of
one training step come from torch's FlopCounterMode. For a lent GPU machine, not CI. Prints one
`RESULT gpu ratio=<xferlab / minimal img/s> ci=[lo,hi] ...` line per model (the geometric mean
of the per-pair ratios with its 95% interval; throughputs are medians).

    python experiments/benchmarks/gpu.py [--steps 50] [--repeats 5] [--batch 64]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _bench import median, ratio, result
from loop_overhead import Setup, build, compare
from torch.utils.flop_counter import FlopCounterMode

MODELS = ("resnet50", "vit_small_patch16_224")


def step_flops(s: Setup) -> int:
    """FLOPs of one forward + backward pass of a batch."""
    model, _, _ = build(s)
    x = torch.randn(s.batch, 3, s.size, s.size, device=s.device)
    x = x.contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter, \
            torch.autocast("cuda", dtype=torch.bfloat16):
        F.cross_entropy(model(x).float(), torch.zeros(s.batch, dtype=torch.long,
                                                      device=s.device)).backward()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu.py needs a CUDA device")
    torch.backends.cudnn.benchmark = True
    for name in MODELS:
        s = Setup(name, args.steps, args.batch, device=torch.device("cuda"), bf16=True,
                  in_chans=3, size=224)
        samples = compare(s, args.repeats)
        rates = {variant: median(samples, variant) for variant in ("xferlab", "minimal")}
        per_image = step_flops(s) / args.batch
        result("gpu", ratio(samples["xferlab"], samples["minimal"]), model=name,
               xferlab_img_s=rates["xferlab"], minimal_img_s=rates["minimal"],
               xferlab_tflops=per_image * rates["xferlab"] / 1e12,
               minimal_tflops=per_image * rates["minimal"] / 1e12, batch=args.batch,
               repeats=args.repeats, device=torch.cuda.get_device_name().replace(" ", "_"))


if __name__ == "__main__":
    main()
