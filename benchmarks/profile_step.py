"""Where the time of one training step goes on the GPU: raw PyTorch, no Lightning (compare with SimpleProfiler).

    python benchmarks/profile_step.py            # prints medians (CUDA events) and a kernel table

Times (median of 30 after warm-up): the batched augmentation of 512 images; a ResNet-18 training step in
fp32 NCHW at batch 256 (the classic recipe) and in bf16 channels_last at batch 512, with and without cuDNN
autotuning; the fast step on 24- and 32-pixel inputs, eager and captured whole (forward, backward and optimizer)
in one CUDA graph: the graph's time is what the GPU needs, so eager minus graph is the cost of launching
kernels one by one; then torch.profiler's top kernels of the fast step.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cifar_lightning import CifarResNet  # noqa: E402
from cifar_lightning.fast.batch_augment import build_batch_transform  # noqa: E402


def cuda_ms(fn, reps: int = 30, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def make_step(batch: int, bf16: bool, channels_last: bool, size: int = 32, graph: bool = False):
    model = CifarResNet(depth=18).cuda()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size, device="cuda").contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device="cuda")

    def step():
        # cache_enabled=False: a CUDA graph cannot keep autocast's cached weight casts between replays
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16, cache_enabled=not graph):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.2)
        loss.backward()
        opt.step()
        if not graph:
            opt.zero_grad(set_to_none=True)

    if not graph:
        return step
    # Whole-network capture as in PyTorch's CUDA graphs guide: warm up on a side stream, then record one step.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g):
        step()
    return g.replay


def main() -> None:
    data = torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8, device="cuda")
    aug = build_batch_transform("flip_crop")
    idx = torch.randperm(50000, device="cuda")[:512]
    print(f"augment 512 (gather + crop/flip + normalize): {cuda_ms(lambda: aug(data[idx])):.3f} ms")
    for name, batch, bf16, cl, bench in [("classic fp32 NCHW b256", 256, False, False, False),
                                         ("bf16 NCHW b512", 512, True, False, False),
                                         ("bf16 channels_last b512", 512, True, True, False),
                                         ("bf16 channels_last b512 +cudnn.benchmark", 512, True, True, True),
                                         ("bf16 channels_last b1024 +cudnn.benchmark", 1024, True, True, True)]:
        torch.backends.cudnn.benchmark = bench
        ms = cuda_ms(make_step(batch, bf16, cl))
        print(f"{name:45s} {ms:7.2f} ms/step {batch / ms * 1000:9.0f} img/s  {45000 / (batch / ms * 1000):.2f} s per 45k")
    for batch in (512, 1024):
        for size in (24, 32):
            for graph in (False, True):
                ms = cuda_ms(make_step(batch, True, True, size, graph))
                name = f"bf16 CL b{batch} {size}px {'CUDA graph' if graph else 'eager'}"
                print(f"{name:45s} {ms:7.2f} ms/step {batch / ms * 1000:9.0f} img/s  {45000 / (batch / ms * 1000):.2f} s per 45k")
    torch.backends.cudnn.benchmark = True
    step = make_step(512, True, True)
    for _ in range(5):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    main()
