"""Why the CPU track looks the way it does: training and augmentation throughput of its options on this CPU.

    python benchmarks/cpu_throughput.py            # writes benchmarks/results/cpu-throughput.{md,json}

Measures, each in a short run after a warm-up, images per second of wall time and per CPU-second (the
process's user+system time: on a machine shared with other jobs it is the steadier number):
  1. a training step (forward, backward, SGD) of candidate networks: width x blocks per stage;
  2. channels_last on/off and 1 vs 2 torch threads for the chosen network;
  3. the flip_crop augmentation per image (torchvision v2, as DataLoader workers run it) against whole batches
     (``batch_augment``, what ``data.on_device`` does), with 1 and 2 threads.
Each row records the load average before and after it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cifar_lightning import CifarResNet, build_transform
from cifar_lightning.fast.batch_augment import build_batch_transform

RESULTS = Path(__file__).resolve().parent / "results"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def timed(fn, items: int, steps: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    before, wall, cpu = load(), time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"img_per_s": items * steps / wall, "img_per_cpu_s": items * steps / cpu, "load": [before, load()]}


def train_step(width: int, blocks: list[int], batch: int, channels_last: bool, threads: int, steps: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = CifarResNet(depth=18, width=width, blocks=blocks)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    x, y = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt), torch.randint(0, 10, (batch,))

    def step():
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    row = {
        "what": "train step",
        "width": width,
        "blocks": blocks,
        "batch": batch,
        "channels_last": channels_last,
        "threads": threads,
    }
    return row | timed(step, batch, steps, warmup=3)


def augmentation(kind: str, threads: int, batch: int = 256) -> dict:
    torch.set_num_threads(threads)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    if kind == "per image (v2)":
        tf = build_transform("flip_crop")
        fn = lambda: torch.stack([tf(img) for img in images])  # noqa: E731 - what a loader worker does per batch
    else:
        btf = build_batch_transform("flip_crop")
        fn = lambda: btf(images)  # noqa: E731
    return {"what": f"flip_crop {kind}", "batch": batch, "threads": threads} | timed(fn, batch, steps=10, warmup=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12, help="timed training steps per row")
    p.add_argument("--note", default="")
    args = p.parse_args()
    rows = []
    for width, blocks in [
        (8, [2, 2, 2, 2]),
        (16, [2, 2, 2, 2]),
        (8, [1, 1, 1, 1]),
        (16, [1, 1, 1, 1]),
        (24, [1, 1, 1, 1]),
    ]:
        rows.append(train_step(width, blocks, 256, True, 1, args.steps))
        print(rows[-1], flush=True)
    for channels_last, threads in [(False, 1), (False, 2), (True, 2)]:
        rows.append(train_step(16, [1, 1, 1, 1], 256, channels_last, threads, args.steps))
        print(rows[-1], flush=True)
    for threads in (1, 2):
        for kind in ("per image (v2)", "whole batch (on_device)"):
            rows.append(augmentation(kind, threads))
            print(rows[-1], flush=True)
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.machine(),
    )
    out = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "note": args.note,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu-throughput.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / "cpu-throughput.md").write_text(markdown(out))


def markdown(out: dict) -> str:
    lines = [
        f"# CPU throughput of the CPU track's options ({out['date']})",
        "",
        f"{out['cpu']}, {out['cores']} cores, torch {out['torch']}. Written by `benchmarks/cpu_throughput.py`; "
        "synthetic tensors (speed does not depend on the pixels). Regenerate: `python benchmarks/cpu_throughput.py`",
        "",
    ]
    if out["note"]:
        lines += [f"Note: {out['note']}", ""]
    lines += [
        "| what | network (width, blocks) | batch | channels_last | threads | img/s | img per CPU-s "
        "| load before/after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        net = f"{r['width']}, {r['blocks']}" if "width" in r else ""
        lines.append(
            f"| {r['what']} | {net} | {r['batch']} | {r.get('channels_last', '')} | {r['threads']} | "
            f"{r['img_per_s']:.0f} | {r['img_per_cpu_s']:.0f} | {r['load'][0]} / {r['load'][1]} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
