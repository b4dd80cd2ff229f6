"""CIFARSystem's options for the fast GPU recipe: linear one-cycle schedule, channels_last, warm-up checks."""

from types import SimpleNamespace

import pytest
import torch

from cifar_lightning import CifarLightningError, CIFARSystem


def tiny():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.BatchNorm2d(8),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )


def schedule(system, steps=100):
    system._trainer = SimpleNamespace(estimated_stepping_batches=steps)  # what configure_optimizers reads
    conf = system.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return torch.tensor(lrs)


def test_onecycle_linear_ramps_linearly_up_then_down():
    system = CIFARSystem(tiny(), lr=0.2, scheduler="onecycle_linear", warmup_fraction=0.25)
    lrs = schedule(system)
    peak = int(lrs.argmax())
    assert abs(lrs.max().item() - 0.2) < 1e-6 and 20 <= peak <= 26  # peak after a quarter of the steps
    up, down = lrs[: peak + 1].diff(), lrs[peak:].diff()
    assert torch.allclose(up, up.mean().expand_as(up), atol=1e-6) and (up > 0).all()  # constant slope up
    assert torch.allclose(down, down.mean().expand_as(down), atol=1e-6) and (down < 0).all()  # and down
    cosine = schedule(CIFARSystem(tiny(), lr=0.2, scheduler="onecycle"))
    assert not torch.allclose(cosine, lrs)  # the default keeps its cosine ramps


def test_channels_last_weights_and_inputs():
    system = CIFARSystem(tiny(), channels_last=True)
    assert system.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
    out = system(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_bad_warmup_fraction_is_refused():
    with pytest.raises(CifarLightningError, match="warmup_fraction"):
        CIFARSystem(warmup_fraction=1.0)
