"""ResNet-18/34 backbones from torchvision, with the CIFAR stem or the ImageNet one.

    from cifar_lightning import build_resnet
    net = build_resnet(depth=18, cifar_stem=True)

which is the textbook CIFAR ResNet-18 (``CifarResNet`` adds narrow and shallow variants for CPUs)::

    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, ResNet34_Weights
from torchvision.models.resnet import BasicBlock

from cifar_lightning.errors import CifarLightningError, check, check_choice

DEPTHS = {18: ([2, 2, 2, 2], ResNet18_Weights.DEFAULT), 34: ([3, 4, 6, 3], ResNet34_Weights.DEFAULT)}


class CifarResNet(ResNet):
    """torchvision's ResNet with three knobs: the stem, the width and the blocks per stage.

    ``cifar_stem=True`` swaps the 7x7 stride-2 convolution and the max-pool (made for 224px ImageNet
    images) for one 3x3 stride-1 convolution, so a 32x32 image keeps its resolution into ``layer1``.
    ``width`` is the channel count of ``layer1`` (64 in the paper); the later stages double it, so a
    smaller width gives a narrow ResNet for CPUs.
    ``blocks`` overrides the residual blocks per stage (``[2, 2, 2, 2]`` for ResNet-18): ``[1, 1, 1, 1]``
    halves the compute, a shallow ResNet-10 for the CPU track (``configs/cpu.yaml``).
    """

    def __init__(
        self,
        depth: int = 18,
        num_classes: int = 10,
        cifar_stem: bool = True,
        pretrained: bool = False,
        width: int = 64,
        blocks: list[int] | None = None,
    ):
        check_choice("depth", depth, DEPTHS)
        check(num_classes > 0 and width > 0, f"num_classes and width must be positive, got {num_classes}, {width}")
        check(
            blocks is None or (len(blocks) == 4 and all(b >= 1 for b in blocks)),
            f"blocks must be four counts >= 1 (one per stage), got {blocks}",
        )
        stage_blocks = list(blocks) if blocks is not None else DEPTHS[depth][0]
        if width == 64:  # what torchvision.models.resnet18() / resnet34() build
            super().__init__(BasicBlock, stage_blocks, num_classes=num_classes)
        else:  # torchvision fixes the stage widths at 64-512: the same network, narrower
            nn.Module.__init__(self)
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = resnet_stage(width, width, stage_blocks[0])
            self.layer2 = resnet_stage(width, width * 2, stage_blocks[1], stride=2)
            self.layer3 = resnet_stage(width * 2, width * 4, stage_blocks[2], stride=2)
            self.layer4 = resnet_stage(width * 4, width * 8, stage_blocks[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(width * 8, num_classes)
            init_like_torchvision(self)
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
            init_like_torchvision(self.conv1)
            self.maxpool = nn.Identity()
        self.config = dict(depth=depth, num_classes=num_classes, cifar_stem=cifar_stem, width=width)
        if blocks is not None:  # only when set: checkpoints of standard depths keep their config
            self.config["blocks"] = list(blocks)
        if pretrained:
            load_imagenet_weights(self)


def resnet_stage(in_channels: int, out_channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """One stage of torchvision's ResNet at any width: ``blocks`` BasicBlocks, the first one changing the channels
    and (``stride``) the resolution, with a 1x1 convolution on its shortcut when either changes."""
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
        )
    first = BasicBlock(in_channels, out_channels, stride=stride, downsample=downsample)
    return nn.Sequential(first, *(BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)))


def init_like_torchvision(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal convolutions (fan-out), BatchNorm scale 1 and shift 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def load_imagenet_weights(net: CifarResNet) -> list[str]:
    """Copy torchvision's ImageNet weights into ``net`` through the weights API.

    Layers whose shape differs (a CIFAR stem's 3x3 conv1, a 10-class fc) keep their fresh initialisation;
    their names are returned. The file is cached under ``$TORCH_HOME/hub/checkpoints``.
    """
    cfg = net.config
    check(cfg["width"] == 64, "ImageNet weights exist only for width=64")
    check(
        cfg.get("blocks", DEPTHS[cfg["depth"]][0]) == DEPTHS[cfg["depth"]][0],
        "ImageNet weights exist only for the standard blocks per stage: leave blocks unset",
    )
    weights = DEPTHS[cfg["depth"]][1]
    try:
        state = weights.get_state_dict(progress=False)
    except OSError as err:  # URLError, no route, DNS failure...
        raise CifarLightningError(
            f"could not download {weights} ({err}); offline, copy {weights.url.rsplit('/', 1)[-1]} into "
            "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints) or use pretrained=False"
        ) from err
    own = net.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(kept, strict=False)
    return sorted(set(own) - set(kept))


def build_resnet(
    depth: int = 18,
    num_classes: int = 10,
    cifar_stem: bool = True,
    pretrained: bool = False,
    width: int = 64,
    blocks: list[int] | None = None,
) -> CifarResNet:
    """A ResNet-``depth`` for ``num_classes`` classes; ``pretrained`` loads ImageNet weights (see above)."""
    return CifarResNet(
        depth=depth, num_classes=num_classes, cifar_stem=cifar_stem, pretrained=pretrained, width=width, blocks=blocks
    )


def feature_map_sides(depth: int = 18, cifar_stem: bool = True, size: int = 32) -> dict[str, int]:
    """Side of the square feature map after the stem and after each stage, for one ``size``x``size`` image.

    Returns ``{"stem": ..., "layer1": ..., "layer2": ..., "layer3": ..., "layer4": ...}``; "stem" is the map that
    goes into ``layer1``. The shapes are computed on the ``meta`` device: nothing is allocated or computed, so a
    224-pixel ImageNet input costs nothing either. With the CIFAR stem a 32px image gives 32, 32, 16, 8, 4; with the
    ImageNet stem 8, 8, 4, 2, 1.
    """
    with torch.device("meta"):
        net = build_resnet(depth=depth, cifar_stem=cifar_stem).eval()
        x = net.maxpool(net.relu(net.bn1(net.conv1(torch.empty(1, 3, size, size)))))
        sides = {"stem": x.shape[-1]}
        for name in ["layer1", "layer2", "layer3", "layer4"]:
            x = getattr(net, name)(x)
            sides[name] = x.shape[-1]
    return sides


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
