"""`pytest --nbval-lax notebooks/` runs every lesson at its smoke size: tiny synthetic data, no GPU, no network."""

import os

os.environ.setdefault("CIFAR_LIGHTNING_SIZE", "smoke")
os.environ.setdefault("WANDB_MODE", "offline")  # never prompt, never reach the network
os.environ.setdefault("MPLBACKEND", "agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models on a shared 2-core CPU: threads only contend
