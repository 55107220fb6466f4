"""loop_overhead: xferlab's training loop vs a minimal hand-written PyTorch loop.

Same timm model, data, batch, optimizer and schedule; the two variants alternate (interleaved
repeats) and the median throughput of each is compared, so the ratio holds on a noisy machine.
Prints `RESULT loop_overhead ratio=<xferlab / minimal> ...` (target: >= 0.95).

    python experiments/benchmarks/loop_overhead.py [--model resnet18] [--steps 30] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
import torch.nn.functional as F

from xferlab import engine, freezing, heads, optim


def build(model_name: str) -> tuple[heads.TransferModel, list, torch.optim.Optimizer]:
    torch.manual_seed(0)
    backbone = timm.create_model(model_name, num_classes=0, in_chans=1)
    model = heads.TransferModel(backbone, torch.nn.Linear(backbone.num_features, 10))
    groups = freezing.layer_groups(model)
    opt = optim.build_optimizer(groups, name="adamw", lr=1e-3, weight_decay=0.05, momentum=0.9)
    return model, groups, opt


def xferlab_loop(model_name: str, images, labels, steps: int, batch: int) -> float:
    model, groups, opt = build(model_name)
    plan = freezing.make_plan("full", len(groups), 0, k=0, every=1, lp_epochs=0, ft_lr_scale=1,
                              decay=1, norms=False)
    loop = engine.Loop(mean=(0.5,), std=(0.5,), device=torch.device("cpu"), batch_size=batch,
                       progress=False)
    val = (images[:batch], labels[:batch])  # one small validation pass: the loop's fixed cost
    started = time.perf_counter()
    engine.fit(model, groups=groups, plan_for=lambda epoch: plan, optimizer=opt,
               train=(images, labels), val=val, loop=loop, epochs=1, max_steps=steps,
               steps_per_epoch=steps, base_lr=1e-3,
               schedule=engine.lr_schedule("cosine", 0.05, 0.0), seed=0,
               on_epoch=lambda epoch, metrics: None)
    return steps * batch / (time.perf_counter() - started)


def minimal_loop(model_name: str, images, labels, steps: int, batch: int) -> float:
    model, _, opt = build(model_name)
    model.train()
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    order = torch.randperm(len(labels), generator=generator)
    for step in range(steps):
        idx = order[(step * batch) % len(labels):][:batch]
        x = (images[idx].float() / 255 - 0.5) / 0.5
        for g in opt.param_groups:
            g["lr"] = 1e-3 * optim.lr_factor(step, steps, name="cosine", warmup_frac=0.05,
                                              min_lr_ratio=0.0)
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    images = torch.randint(0, 256, (args.steps * args.batch, 1, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (len(images),))
    ours, theirs = [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        ours.append(xferlab_loop(args.model, images, labels, args.steps, args.batch))
        theirs.append(minimal_loop(args.model, images, labels, args.steps, args.batch))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"RESULT loop_overhead ratio={a / b:.2f} xferlab_img_s={a:.0f} minimal_img_s={b:.0f} "
          f"model={args.model} batch={args.batch} steps={args.steps} repeats={args.repeats} "
          f"threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
