"""The precision a machine trains in: ``pick_precision()``, which ``precision: auto`` in the configs stands for.

* a CUDA GPU with native bfloat16 (compute capability 8.0 or newer: A100, H100, L4, RTX 30xx/40xx): ``"bf16-mixed"``;
* an older CUDA GPU (Colab's T4 is 7.5, a V100 7.0): ``"16-mixed"``, float16 with a gradient scaler; PyTorch can
  emulate bfloat16 there, but without the tensor cores that make mixed precision pay;
* a CPU: ``"32-true"``; most CPUs have no bfloat16 units and run bf16 autocast slower than float32;
* Apple's MPS: ``"32-true"``; Lightning accepts mixed precision there, but MPS autocast covers fewer operations
  (bfloat16 needs macOS 14), and float32 runs everywhere.
"""

from __future__ import annotations

import torch
from lightning.pytorch.accelerators import Accelerator, CUDAAccelerator

NATIVE_BF16_CAPABILITY = 8  # compute capability (major) from which NVIDIA GPUs compute in bfloat16 natively


def pick_precision(accelerator: str | Accelerator = "auto") -> str:
    """The Trainer ``precision`` for this machine when it trains on ``accelerator`` (the Trainer's argument).

    ``"auto"`` and ``"gpu"`` mean CUDA when PyTorch sees a CUDA GPU, as they do for the Trainer; the GPU is the
    current CUDA device.
    """
    if not uses_cuda(accelerator):
        return "32-true"
    major, _ = torch.cuda.get_device_capability()
    return "bf16-mixed" if major >= NATIVE_BF16_CAPABILITY else "16-mixed"


def uses_cuda(accelerator: str | Accelerator) -> bool:
    """Whether a Trainer with this ``accelerator`` runs on a CUDA GPU."""
    if isinstance(accelerator, Accelerator):
        return isinstance(accelerator, CUDAAccelerator)
    return str(accelerator).lower() in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of a Trainer ``precision``: bfloat16 for ``"bf16-mixed"``, float16 for
    ``"16-mixed"``; ``None`` for full precision (no autocast), for a hand-written loop or a timing that should run
    as the Trainer would."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
