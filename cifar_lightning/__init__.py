"""cifar_lightning: the reusable code of the workshop. Notebooks import it; they never redefine it."""

from cifar_lightning.augment import CIFAR10_MEAN, CIFAR10_STD, PRESETS, build_transform
from cifar_lightning.callbacks import (
    EMAWeights,
    EpochTimer,
    GradNormLogger,
    ProgressiveCrop,
    WeightDigest,
    build_callbacks,
    latest_checkpoint,
)
from cifar_lightning.data import CIFAR10DataModule
from cifar_lightning.errors import CifarLightningError
from cifar_lightning.model import CifarResNet, build_resnet, count_parameters, feature_map_sides
from cifar_lightning.sources import CLASSES
from cifar_lightning.system import CIFARSystem, load_system

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CLASSES",
    "PRESETS",
    "CIFAR10DataModule",
    "CIFARSystem",
    "CifarLightningError",
    "CifarResNet",
    "EMAWeights",
    "EpochTimer",
    "GradNormLogger",
    "ProgressiveCrop",
    "WeightDigest",
    "build_callbacks",
    "build_resnet",
    "build_transform",
    "count_parameters",
    "feature_map_sides",
    "latest_checkpoint",
    "load_system",
]
__version__ = "0.1.0"
