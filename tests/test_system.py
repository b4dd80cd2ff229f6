import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from cifar_lightning import CIFAR10DataModule, CifarLightningError, CIFARSystem, build_resnet, load_system
from cifar_lightning import system as system_module
from cifar_lightning.system import fused_if_cuda, logger_writes_this_step, narrowest_conv, smoothed_nll, training_loss
from tests.helpers import cpu_trainer

ROOT = Path(__file__).resolve().parents[1]


def tiny_data(**kw):
    return CIFAR10DataModule(source="synthetic", synthetic_size=(1200, 400), batch_size=64, num_workers=0, **kw)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_smoothed_nll_equals_cross_entropy(smoothing):
    logits, target = torch.randn(16, 10), torch.randint(0, 10, (16,))
    expected = F.cross_entropy(logits, target, label_smoothing=smoothing)
    assert torch.allclose(smoothed_nll(F.log_softmax(logits, 1), target, smoothing), expected, atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        dict(optimizer="rmsprop"),
        dict(scheduler="step"),
        dict(lr=0),
        dict(lr=-1),
        dict(compile="fastest"),
        dict(tta_translate=-1),
    ],
)
def test_bad_hyperparameters(bad):
    with pytest.raises(CifarLightningError):
        CIFARSystem(build_resnet(width=8), **bad)


@pytest.mark.parametrize(("value", "mode"), [(True, None), ("reduce-overhead", "reduce-overhead")])
def test_compile_mode_reaches_torch_compile(monkeypatch, value, mode):
    """``compile`` true -> torch.compile's default mode; a mode name is passed through (compiling itself is not run)."""
    system = CIFARSystem(build_resnet(width=8), compile=value)
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append((fn, kw)) or (lambda *args: fn(*args)))
    system.setup("fit")
    system.setup("test")
    assert calls == [(training_loss, {"mode": mode, "dynamic": False})]  # once, in the mode asked for, static shapes


def test_compiled_system_trains_through_the_compiled_loss_and_evaluates_eagerly(monkeypatch):
    """The training step runs the compiled :func:`training_loss`; validation, test and prediction call the module."""
    system = CIFARSystem(build_resnet(width=8), compile=True, label_smoothing=0.1)
    compiled_calls = []

    def fake_compile(fn, **kw):
        def compiled(*args):
            compiled_calls.append(len(args))
            return fn(*args)

        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    system.setup("fit")
    monkeypatch.setattr(system, "log", lambda *a, **kw: None)
    batch = (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    system.validation_step(batch, 0)
    system.test_step(batch, 0)
    assert system.predict_step(batch, 0).shape == (4, 10)
    assert compiled_calls == []
    loss = system.training_step(batch, 0)
    assert compiled_calls == [3]
    expected = F.cross_entropy(system(batch[0]), batch[1], label_smoothing=0.1)
    assert torch.allclose(loss, expected, atol=1e-5)  # the same loss as without compile


def test_fused_optimizer_only_on_gpu():
    """PyTorch's fused optimizer step needs every parameter on a GPU; elsewhere its default is kept."""
    cuda_like = type("P", (), {"is_cuda": True})()
    cpu_like = type("P", (), {"is_cuda": False})()
    assert fused_if_cuda([cuda_like, cuda_like]) is True
    assert fused_if_cuda([cuda_like, cpu_like]) is None
    assert fused_if_cuda([]) is None
    opt = CIFARSystem(build_resnet(width=8), scheduler="none").configure_optimizers()  # a CPU model
    assert not opt.defaults["fused"]


def test_no_fused_optimizer_when_the_trainer_clips(monkeypatch):
    """Lightning refuses to clip the gradients of a fused optimizer under mixed precision: clipping turns it off."""
    cuda_like = type("P", (), {"is_cuda": True})()
    assert fused_if_cuda([cuda_like], clips_gradients=True) is None
    asked = []
    monkeypatch.setattr(system_module, "fused_if_cuda", lambda params, clips_gradients: asked.append(clips_gradients))
    for clip in (None, 1.0):
        system = CIFARSystem(build_resnet(width=8), scheduler="none")
        system.trainer = L.Trainer(gradient_clip_val=clip, logger=False, enable_progress_bar=False)
        system.configure_optimizers()
    assert asked == [False, True]


@pytest.mark.parametrize("shown", [True, False])
def test_progress_bar_loss_switch(monkeypatch, shown):
    """``progress_bar_loss=False`` logs the training loss without ``prog_bar`` (Lightning reads it back every step)."""
    system = CIFARSystem(build_resnet(width=8), progress_bar_loss=shown)
    logged = {}
    monkeypatch.setattr(system, "log", lambda name, value, **kw: logged.setdefault(name, kw))
    system.training_step((torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))), 0)
    assert logged["train_loss"].get("prog_bar") is shown


def test_loss_handed_to_lightning_only_on_written_steps(tmp_path, monkeypatch):
    """Without the bar, ``train_loss`` reaches Lightning only on the steps its logger writes (each ``self.log`` costs
    host time), and the logger writes the same losses at the same steps as with it."""
    written, calls = {}, {}
    for shown in (True, False):
        L.seed_everything(0)
        system = CIFARSystem(build_resnet(width=8), progress_bar_loss=shown, scheduler="none")
        log, calls[shown] = system.log, []

        def counting_log(name, value, *args, _log=log, _calls=calls[shown], **kw):
            _calls.append(name)
            return _log(name, value, *args, **kw)

        monkeypatch.setattr(system, "log", counting_log)
        logger = CSVLogger(tmp_path, name=str(shown))
        cpu_trainer(
            tmp_path,
            max_epochs=2,
            limit_train_batches=5,
            limit_val_batches=1,
            log_every_n_steps=3,
            enable_checkpointing=False,
            logger=logger,
        ).fit(system, tiny_data())
        rows = pd.read_csv(Path(logger.log_dir) / "metrics.csv").dropna(subset=["train_loss"])
        written[shown] = rows.set_index("step")["train_loss"].to_dict()
    assert list(written[True]) == [2, 5, 8]  # steps 3, 6, 9 of 10 (0-based)
    assert written[False] == pytest.approx(written[True])
    assert calls[True].count("train_loss") == 10 and calls[False].count("train_loss") == 3


def test_short_training_beats_chance(tmp_path):
    L.seed_everything(0)
    system = CIFARSystem(build_resnet(width=8), lr=0.05, scheduler="onecycle")
    dm = tiny_data()
    t = cpu_trainer(tmp_path, max_epochs=2, enable_checkpointing=False)
    t.fit(system, dm)
    acc = t.test(system, dm, verbose=False)[0]["test_acc"]
    assert acc > 0.5, acc  # chance is 0.1


@pytest.mark.parametrize("optimizer,scheduler", [("adam", "cosine"), ("adamw", "plateau"), ("sgd", "none")])
def test_every_optimizer_and_scheduler_trains(tmp_path, optimizer, scheduler):
    system = CIFARSystem(build_resnet(width=8), optimizer=optimizer, scheduler=scheduler, lr=1e-3)
    cpu_trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=2, enable_checkpointing=False).fit(
        system, tiny_data()
    )
    assert system.trainer.global_step == 3


def test_checkpoint_restores_identical_predictions(tmp_path):
    system = CIFARSystem(build_resnet(depth=18, width=8), lr=0.05)
    dm = tiny_data()
    t = cpu_trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=2,
        callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)],
    )
    t.fit(system, dm)
    restored = load_system(str(tmp_path / "last.ckpt")).eval()
    system.eval()
    x = dm.test_images[:32].float() / 255
    with torch.no_grad():
        assert torch.equal(system(x), restored(x))
    assert restored.hparams.lr == 0.05 and restored.backbone.config["width"] == 8


class Interrupt(L.Callback):
    """Stops the run after its first epoch, like a crash or a closed laptop."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_resume_from_last_continues(tmp_path):
    dm = tiny_data()
    kw = dict(max_epochs=2, limit_train_batches=5, limit_val_batches=1)
    first = cpu_trainer(tmp_path, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True), Interrupt()], **kw)
    first.fit(CIFARSystem(build_resnet(width=8), scheduler="cosine", lr=0.05), dm)
    assert (first.current_epoch, first.global_step) == (1, 5)
    second = cpu_trainer(tmp_path, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)], **kw)
    second.fit(
        CIFARSystem(build_resnet(width=8), scheduler="cosine", lr=0.05), dm, ckpt_path=str(tmp_path / "last.ckpt")
    )
    assert (second.current_epoch, second.global_step) == (2, 10)  # one more epoch, not two
    # the cosine schedule went on from step 5 to its end instead of restarting at the peak
    assert second.optimizers[0].param_groups[0]["lr"] < 1e-3


@pytest.mark.parametrize("steps", [2, 3, 4, 5, 9])
def test_onecycle_survives_a_few_steps(tmp_path, steps):
    system = CIFARSystem(build_resnet(width=8), scheduler="onecycle_linear", warmup_fraction=0.25)
    cpu_trainer(tmp_path, max_epochs=1, limit_train_batches=steps, limit_val_batches=1, enable_checkpointing=False).fit(
        system, tiny_data()
    )
    assert system.trainer.global_step == steps


class EpochGuess(torch.nn.Module):
    """Answers class ``epoch`` for every image (set from outside); one weight so that the optimizer has a parameter."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.epoch = 0

    def forward(self, x):
        logits = torch.full((len(x), 10), -10.0) + self.weight
        logits[:, self.epoch] = 10.0
        return logits


class SetGuess(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        pl_module.backbone.epoch = trainer.current_epoch


def test_train_acc_is_each_epochs_own(tmp_path):
    """train_acc, summed per step and logged at the epoch's end, covers that epoch only (reset in between): the
    network answers class 0 in epoch 0 and class 1 in epoch 1, so the two values are those classes' shares."""
    dm = CIFAR10DataModule(source="synthetic", synthetic_size=(1200, 400), batch_size=108, num_workers=0)
    system = CIFARSystem(EpochGuess(), scheduler="none")
    seen = []
    read = type(
        "Read",
        (L.Callback,),
        {
            "on_train_epoch_start": lambda self, t, m: seen.extend(
                [float(t.callback_metrics["train_acc"])] if "train_acc" in t.callback_metrics else []
            )
        },
    )
    trainer = cpu_trainer(
        tmp_path, max_epochs=2, limit_val_batches=0, callbacks=[SetGuess(), read()], enable_checkpointing=False
    )
    trainer.fit(system, dm)
    seen.append(float(trainer.callback_metrics["train_acc"]))
    shares = [float((dm.train_labels == c).float().mean()) for c in (0, 1)]  # 1080 = 10 full batches: all seen
    assert len(dm.train_labels) == 1080 and shares[0] != pytest.approx(shares[1])
    assert seen == pytest.approx(shares)  # without the reset, epoch 1 would report the mean of both


def test_tta_views_are_mirrors_and_reflect_padded_shifts():
    system = CIFARSystem(build_resnet(depth=18, width=8), tta_flip=True, tta_translate=2)
    x = torch.rand(3, 3, 8, 8)
    views = system.tta_views(x)
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    down_right, up_left = views[1], views[2]
    assert torch.equal(down_right[..., 2:, 2:], x[..., :-2, :-2])
    assert torch.equal(up_left[..., :-2, :-2], x[..., 2:, 2:])
    assert torch.equal(down_right[..., 0, 2:], x[..., 2, :-2])  # reflect padding, as the training crops use
    assert torch.equal(views[3], x.flip(-1)) and torch.equal(views[4], down_right.flip(-1))
    assert len(CIFARSystem(build_resnet(depth=18, width=8), tta_flip=False).tta_views(x)) == 1


def test_tta_averages_the_probabilities_of_its_views():
    torch.manual_seed(0)
    system = CIFARSystem(build_resnet(depth=18, width=8), tta_flip=True, tta_translate=1).eval()
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        log_probs = system.predict_log_probs(x)
        each = [F.softmax(system(v), dim=1) for v in system.tta_views(x)]
    assert torch.allclose(log_probs.exp(), torch.stack(each).mean(0), atol=1e-5)
    assert torch.allclose(log_probs.exp().sum(1), torch.ones(4), atol=1e-5)


def test_evaluation_pauses_cudnn_autotuning(tmp_path, monkeypatch):
    """Validation runs with cuDNN's heuristics (new shapes, few batches); training gets its autotuning back."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    seen = []

    class Watch(L.Callback):
        def on_validation_batch_start(self, *args):
            seen.append(("val", torch.backends.cudnn.benchmark))

        def on_train_batch_start(self, *args):
            seen.append(("train", torch.backends.cudnn.benchmark))

    system = CIFARSystem(build_resnet(width=8), scheduler="none")
    t = cpu_trainer(
        tmp_path,
        max_epochs=2,
        enable_checkpointing=False,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[Watch()],
        benchmark=True,
    )
    t.fit(system, tiny_data())
    assert {phase: flag for phase, flag in seen} == {"train": True, "val": False}
    assert ("train", True) in seen[seen.index(("val", False)) :]  # training after a validation tunes again
    assert torch.backends.cudnn.benchmark


def test_narrow_channels_last_fit_on_a_cpu_keeps_nchw_instead_of_hanging(tmp_path):
    """oneDNN can hang or crash in the backward of NHWC convolutions narrower than 16 channels (torch 2.14 on x86
    CPUs; width 8 segfaults on 224-pixel inputs): such a fit keeps NCHW, with a warning. In a subprocess with a time
    limit, so that a hang fails the test, not the run."""
    assert narrowest_conv(build_resnet(width=2)) == 2 and narrowest_conv(build_resnet(width=8)) == 8
    code = """
import sys, warnings, torch
RUN_DIR = sys.argv[1]
from cifar_lightning import CIFAR10DataModule, CIFARSystem, build_resnet
from tests.helpers import cpu_trainer
for width in (2, 8, 16):
    system = CIFARSystem(build_resnet(width=width), channels_last=True, scheduler="none")
    dm = CIFAR10DataModule(source="synthetic", synthetic_size=(256, 64), batch_size=32, num_workers=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cpu_trainer(RUN_DIR, max_epochs=1, limit_train_batches=6, limit_val_batches=1,
                    enable_checkpointing=False).fit(system, datamodule=dm)
    nhwc = system.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    print(width, nhwc, any("channels_last is off" in str(w.message) for w in caught))
"""
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-4:-1] == ["2 False True", "8 False True", "16 True False"]


def test_logger_writes_this_step_follows_log_every_n_steps():
    """Without a trainer (a step called by hand) every step's loss is logged; with one, the steps its loggers write."""
    assert logger_writes_this_step(None)
    trainer = SimpleNamespace(fast_dev_run=False, log_every_n_steps=5, should_stop=False, global_step=0)
    written = [
        step for step in range(12) if logger_writes_this_step(SimpleNamespace(**{**vars(trainer), "global_step": step}))
    ]
    assert written == [4, 9]
    assert logger_writes_this_step(SimpleNamespace(**{**vars(trainer), "should_stop": True}))
