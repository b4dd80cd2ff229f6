"""The fast GPU path: the data set held on the device and augmented a whole batch at a time.

    from cifar_lightning import CIFAR10DataModule
    dm = CIFAR10DataModule(on_device=True)   # DeviceLoader + build_batch_transform, no loader workers

``CIFAR10DataModule(on_device=True)`` uses both; the rest of the package works without them.
"""

from cifar_lightning.fast.batch_augment import BATCH_PRESETS, BatchTransform, build_batch_transform
from cifar_lightning.fast.device_loader import DeviceLoader

__all__ = ["BATCH_PRESETS", "BatchTransform", "DeviceLoader", "build_batch_transform"]
