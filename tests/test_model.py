import urllib.error

import pytest
import torch

from cifar_lightning import CifarLightningError, build_resnet, count_parameters, feature_map_sides
from cifar_lightning.model import CifarResNet, ResNet18_Weights


@pytest.mark.parametrize("depth", [18, 34])
@pytest.mark.parametrize("cifar_stem", [True, False])
def test_output_shape(depth, cifar_stem):
    net = build_resnet(depth=depth, cifar_stem=cifar_stem).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_parameter_counts_match_torchvision():
    from torchvision.models import resnet18, resnet34

    # ImageNet stem with 1000 classes is exactly torchvision's network
    assert count_parameters(build_resnet(18, num_classes=1000, cifar_stem=False)) == count_parameters(resnet18())
    assert count_parameters(build_resnet(34, num_classes=1000, cifar_stem=False)) == count_parameters(resnet34())
    assert 11.1e6 < count_parameters(build_resnet(18)) < 11.2e6


def test_cifar_stem_keeps_resolution():
    cifar, imagenet = build_resnet(cifar_stem=True), build_resnet(cifar_stem=False)
    x = torch.randn(1, 3, 32, 32)
    assert cifar.maxpool(cifar.conv1(x)).shape[-1] == 32
    assert imagenet.maxpool(imagenet.conv1(x)).shape[-1] == 8


@pytest.mark.parametrize("depth", [18, 34])
def test_feature_map_sides(depth):
    stages = ["stem", "layer1", "layer2", "layer3", "layer4"]
    for cifar_stem, size, sides in [
        (True, 32, [32, 32, 16, 8, 4]),
        (False, 32, [8, 8, 4, 2, 1]),
        (False, 224, [56, 56, 28, 14, 7]),
    ]:
        found = feature_map_sides(depth=depth, cifar_stem=cifar_stem, size=size)
        assert list(found.items()) == list(
            zip(stages, sides, strict=True)
        )  # in order: the columns of lesson 03's table


@pytest.mark.parametrize("cifar_stem", [True, False])
def test_feature_map_sides_match_a_real_forward_pass(cifar_stem):
    net, seen = build_resnet(cifar_stem=cifar_stem).eval(), {}

    def record(name):
        def hook(module, args, out):
            seen[name] = out.shape[-1]

        return hook

    for name in ["layer1", "layer2", "layer3", "layer4"]:
        getattr(net, name).register_forward_hook(record(name))
    net.maxpool.register_forward_hook(record("stem"))
    with torch.no_grad():
        net(torch.randn(1, 3, 40, 40))  # 40: the ImageNet stem rounds 40 -> 20 -> 10, then 10, 5, 3, 2
    assert feature_map_sides(cifar_stem=cifar_stem, size=40) == seen


def test_width_scales_channels():
    net = build_resnet(width=16)
    assert net.conv1.out_channels == 16 and net.fc.in_features == 128
    assert count_parameters(net) < count_parameters(build_resnet()) / 10


def test_unknown_depth():
    with pytest.raises(CifarLightningError, match="unknown depth 50"):
        build_resnet(depth=50)


def test_pretrained_offline_error(monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(type(ResNet18_Weights.DEFAULT), "get_state_dict", offline)
    with pytest.raises(CifarLightningError, match="could not download.*TORCH_HOME"):
        build_resnet(pretrained=True)


def test_pretrained_loads_matching_layers(monkeypatch):
    from torchvision.models import resnet18

    imagenet = resnet18().state_dict()
    monkeypatch.setattr(type(ResNet18_Weights.DEFAULT), "get_state_dict", lambda self, *a, **k: imagenet)
    net = build_resnet(pretrained=True)  # CIFAR stem, 10 classes
    assert torch.equal(net.layer3[0].conv1.weight, imagenet["layer3.0.conv1.weight"])
    assert net.conv1.weight.shape == (64, 3, 3, 3)  # kept its own initialisation
    assert net.fc.weight.shape == (10, 512)
    assert isinstance(net, CifarResNet)
