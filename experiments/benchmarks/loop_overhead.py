"""loop_overhead: xferlab's training loop vs a minimal hand-written PyTorch loop.

Same timm model (built afresh, same seed, for every measurement), data, batch, optimizer and
schedule. xferlab's side is `engine.fit` for one epoch of --steps steps, its fixed costs
included (a one-batch validation pass, copying the best weights); the minimal side is the
steps alone. After one untimed run of each, the two alternate (ABBA: neither always runs
first) until the ratio's 95% interval is narrower than --margin (0.05: the target is >= 0.95),
at least --min-repeats and at most --repeats pairs, stopping before --budget-s. Prints

    RESULT loop_overhead ratio=<xferlab / minimal img/s> ci=[lo,hi] ...

the ratio the geometric mean of the per-pair ratios with its 95% interval, and the median
throughputs. `gpu.py` runs the same two loops on CUDA in bf16.

With --fastest-minimal (the new default's case: `--model efficientnet_lite0 --size 64
--in-chans 3 --fastest-minimal`), xferlab's side uses the memory format that
`trainer.channels_last=auto` picks on CPU (channels_last for a convolutional backbone), and the
minimal loop runs in both formats: the ratio is against the faster of the two, repeat by repeat.
With --compile the minimal loop also runs under `torch.compile` (in both formats with
--fastest-minimal): the reference is then the fastest of eager, channels_last, compile and
compile + channels_last, and `minimal_compiled*_img_s` say whether compiling pays on this
machine (xferlab's side does not compile: `trainer.compile=false` is the default).

    python experiments/benchmarks/loop_overhead.py [--model resnet18] [--steps 30] [--batch 64]
        [--size 32] [--in-chans 1] [--fastest-minimal] [--compile]
        [--repeats 40] [--min-repeats 5] [--budget-s 200] [--margin 0.05]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import timm
import torch
import torch.nn.functional as F
from _bench import interleaved, median, ratio, result

from xferlab import engine, freezing, heads, optim
from xferlab.launch.common import convolutional

CPU = torch.device("cpu")


@dataclass(frozen=True)
class Setup:
    model: str
    steps: int
    batch: int
    device: torch.device = CPU
    bf16: bool = False  # autocast, and channels_last inputs and weights (the CUDA path)
    in_chans: int = 1
    size: int = 32
    channels_last: bool = False  # inputs and weights in channels_last (always with bf16)
    compile: bool = False  # torch.compile (inductor), the minimal loop only

    @property
    def nhwc(self) -> bool:
        return self.channels_last or self.bf16


def build(s: Setup) -> tuple[heads.TransferModel, list, torch.optim.Optimizer]:
    torch.manual_seed(0)
    backbone = timm.create_model(s.model, num_classes=0, in_chans=s.in_chans)
    model = heads.TransferModel(backbone, torch.nn.Linear(backbone.num_features, 10))
    fmt = torch.channels_last if s.nhwc else torch.preserve_format
    model.to(s.device, memory_format=fmt)
    if s.compile:  # in place, as trainer.compile does; compiles at the first step
        model.compile()
    groups = freezing.layer_groups(model)
    opt = optim.build_optimizer(groups, name="adamw", lr=1e-3, weight_decay=0.05, momentum=0.9)
    return model, groups, opt


def sync(s: Setup) -> None:
    if s.device.type == "cuda":
        torch.cuda.synchronize()


def xferlab_loop(s: Setup, images, labels) -> float:
    model, groups, opt = build(s)
    plan = freezing.make_plan("full", len(groups), 0, k=0, every=1, lp_epochs=0, ft_lr_scale=1,
                              decay=1, norms=False)
    loop = engine.Loop(mean=(0.5,) * s.in_chans, std=(0.5,) * s.in_chans, device=s.device,
                       bf16=s.bf16, channels_last=s.nhwc, batch_size=s.batch, progress=False)
    val = (images[:s.batch], labels[:s.batch])  # one small validation pass: the loop's fixed cost
    sync(s)
    started = time.perf_counter()
    engine.fit(model, groups=groups, plan_for=lambda epoch: plan, optimizer=opt,
               train=(images, labels), val=val, loop=loop, epochs=1, max_steps=s.steps,
               steps_per_epoch=s.steps, base_lr=1e-3,
               schedule=engine.lr_schedule("cosine", 0.05, min_lr_ratio=0.0), seed=0,
               on_epoch=lambda epoch, metrics: None)
    sync(s)
    return s.steps * s.batch / (time.perf_counter() - started)


def minimal_loop(s: Setup, images, labels) -> float:
    model, _, opt = build(s)
    model.train()
    generator = torch.Generator().manual_seed(0)
    sync(s)
    started = time.perf_counter()
    order = torch.randperm(len(labels), generator=generator)
    for step in range(s.steps):
        idx = order[(step * s.batch) % len(labels):][:s.batch]
        x = (images[idx].to(s.device, non_blocking=True).float() / 255 - 0.5) / 0.5
        if s.nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        for g in opt.param_groups:
            g["lr"] = 1e-3 * optim.lr_factor(step, s.steps, name="cosine", warmup_frac=0.05,
                                              min_lr_ratio=0.0)
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=s.bf16):
            loss = F.cross_entropy(model(x).float(), labels[idx].to(s.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(s)
    return s.steps * s.batch / (time.perf_counter() - started)


def compare(s: Setup, repeats: int, *, min_repeats: int | None = None,
            budget_s: float | None = None, margin: float | None = None,
            minimal_formats: bool = False, compiled: bool = False) -> dict[str, list[float]]:
    """img/s of both loops on the same random uint8 data, pair by pair, after one untimed
    run of each (allocator, kernels, caches). With `minimal_formats`, the minimal loop runs in
    both memory formats (`minimal` as `s`, `minimal_other` in the other), so that xferlab's
    choice can be judged against the faster of the two; with `compiled`, the minimal loop also
    runs under torch.compile (`minimal_compiled`, and `minimal_compiled_other` with formats)."""
    images = torch.randint(0, 256, (s.steps * s.batch, s.in_chans, s.size, s.size),
                           dtype=torch.uint8)
    if s.device.type == "cuda":
        images = images.pin_memory()
    labels = torch.randint(0, 10, (len(images),))
    variants = {"xferlab": lambda: xferlab_loop(s, images, labels),
                "minimal": lambda: minimal_loop(s, images, labels)}
    if minimal_formats:
        other = replace(s, channels_last=not s.channels_last)
        variants["minimal_other"] = lambda: minimal_loop(other, images, labels)
    if compiled:
        variants["minimal_compiled"] = lambda: minimal_loop(replace(s, compile=True), images,
                                                            labels)
        if minimal_formats:
            variants["minimal_compiled_other"] = lambda: minimal_loop(
                replace(s, channels_last=not s.channels_last, compile=True), images, labels)
    for warm_up in variants.values():
        warm_up()

    def enough(samples: dict[str, list[float]]) -> bool:
        return (margin is not None and len(samples.get("xferlab", ())) >= 2
                and ratio(samples["xferlab"], fastest_minimal(samples)).width < margin)

    return interleaved(variants, repeats, min_repeats=min_repeats, budget_s=budget_s,
                       enough=enough)


def fastest_minimal(samples: dict[str, list[float]]) -> list[float]:
    """The minimal loop's img/s repeat by repeat, the fastest variant's (format, compile)."""
    minimal = [v for name, v in samples.items() if name.startswith("minimal")]
    return [max(rates) for rates in zip(*minimal, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=40, help="pairs, at most")
    parser.add_argument("--min-repeats", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=200)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--fastest-minimal", action="store_true",
                        help="xferlab in the memory format trainer.channels_last=auto picks, "
                        "against the faster of the minimal loop's two formats, per repeat")
    parser.add_argument("--compile", action="store_true",
                        help="the minimal loop under torch.compile too (and in both formats "
                        "with --fastest-minimal): the fastest of them is the reference")
    args = parser.parse_args()
    s = Setup(args.model, args.steps, args.batch, in_chans=args.in_chans, size=args.size)
    if args.fastest_minimal:  # what a default run does on CPU
        s = replace(s, channels_last=convolutional(build(s)[0].backbone))
    rates = compare(s, args.repeats, min_repeats=args.min_repeats, budget_s=args.budget_s,
                    margin=args.margin, minimal_formats=args.fastest_minimal,
                    compiled=args.compile)
    overhead = ratio(rates["xferlab"], fastest_minimal(rates))
    formats = {"minimal": "channels_last" if s.nhwc else "contiguous"}
    result("loop_overhead", overhead, xferlab_img_s=median(rates, "xferlab"),
           **{f"{name}_img_s": median(rates, name) for name in rates if name != "xferlab"},
           xferlab_format=formats["minimal"], ci_narrower_than_margin=overhead.width
           < args.margin, margin=args.margin, model=args.model, size=args.size,
           batch=args.batch, steps=args.steps, repeats=overhead.n,
           threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
