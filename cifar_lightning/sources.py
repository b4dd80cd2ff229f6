"""Where the images come from. Every source ends as uint8 arrays, decoded once and cached.

A source returns ``(train_x, train_y, test_x, test_y)``: images as ``uint8 [N, 32, 32, 3]``
and labels as ``int64 [N]``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path

import numpy as np

from cifar_lightning.errors import CifarLightningError, check

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SOURCES = ("download", "pickle", "folder", "synthetic")
PICKLE_DIR = "cifar-10-batches-py"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
OFFLINE_HINT = (
    "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html on a connected machine, "
    "extract it into {dir} and use --data.source pickle"
)


def default_data_dir() -> str:
    """``$PATH_DATASETS`` if set, else ``./data`` (Lightning's tutorials use the same variable)."""
    return os.environ.get("PATH_DATASETS", "data")


def check_data_dir(data_dir: str | Path) -> None:
    """Reject a data dir that is missing or empty, saying what belongs there."""
    path = Path(data_dir)
    check(path.is_dir(), f"data dir {path} does not exist: point --data.data_dir at your copy of CIFAR-10 (see README)")
    check(
        any(path.iterdir()),
        f"data dir {path} is empty: put cifar-10-batches-py or train/ and test/ class folders in it",
    )


def download(data_dir: str | Path) -> None:
    """Download and extract CIFAR-10 into ``data_dir`` through torchvision (no-op when already there)."""
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(str(data_dir), train=True, download=True)
        CIFAR10(str(data_dir), train=False, download=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CifarLightningError(
            f"could not download CIFAR-10 into {data_dir} ({reason}); " + OFFLINE_HINT.format(dir=data_dir)
        ) from err


def load_pickle(data_dir: str | Path):
    """Read the official python batches from ``data_dir`` or ``data_dir/cifar-10-batches-py``."""
    root = Path(data_dir)
    folder = root if (root / "data_batch_1").exists() else root / PICKLE_DIR
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    check(
        not missing, f"no CIFAR-10 batches in {folder} (missing {', '.join(missing)}); " + OFFLINE_HINT.format(dir=root)
    )
    arrays = []
    for name in names:
        try:
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            arrays.append((x, np.asarray(batch["labels"], dtype=np.int64)))
        except Exception as err:
            raise CifarLightningError(
                f"corrupt CIFAR-10 batch {folder / name} ({type(err).__name__}): delete it and download again"
            ) from err
    train_x = np.concatenate([x for x, _ in arrays[:5]])
    train_y = np.concatenate([y for _, y in arrays[:5]])
    return train_x, train_y, arrays[5][0], arrays[5][1]


def _image_files(split_dir: Path):
    """Sorted ``(path, label)`` pairs under ``split_dir/<class>/``, checking the class folders."""
    check(split_dir.is_dir(), f"image folder {split_dir} does not exist: expected <root>/{{train,test}}/<class>/*.jpg")
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if set(found) != set(CLASSES):
        missing = sorted(set(CLASSES) - set(found))
        extra = sorted(set(found) - set(CLASSES))
        raise CifarLightningError(
            f"wrong class folders in {split_dir}: missing {missing or 'none'}, unexpected {extra or 'none'}; "
            f"expected exactly {', '.join(CLASSES)}"
        )
    files = [
        (p, label)
        for label, name in enumerate(CLASSES)
        for p in sorted((split_dir / name).iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    check(files, f"no .png/.jpg images under {split_dir}/<class>/")
    return files


def _decode(files):
    from PIL import Image

    images = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (32, 32):
                    im = im.resize((32, 32), Image.BILINEAR)
                images[i] = np.asarray(im)
        except Exception as err:
            raise CifarLightningError(f"cannot read image {path} ({type(err).__name__}): remove or replace it") from err
    return images, np.array([label for _, label in files], dtype=np.int64)


def load_folder(root: str | Path):
    """Decode an image-folder tree ``root/{train,test}/<class>/*.{png,jpg}`` (resized to 32x32 if needed)."""
    root = Path(root)
    train_x, train_y = _decode(_image_files(root / "train"))
    test_x, test_y = _decode(_image_files(root / "test"))
    return train_x, train_y, test_x, test_y


def make_synthetic(n_train: int = 5000, n_test: int = 1000, seed: int = 0):
    """A small, learnable 10-class data set of 32x32 images for offline smoke runs and tests.

    Each class has its own colour and stripe pattern (orientation and frequency); samples add a random
    phase, brightness and noise, so a network has something real to learn and chance stays at 10%.
    """
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.2, 0.8, size=(10, 3))
    angles = np.linspace(0, np.pi, 10, endpoint=False)
    freqs = np.array([2, 3, 4, 2, 3, 4, 2, 3, 4, 3]) * (2 * np.pi / 32)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)

    def draw(n):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
        a, f = angles[labels][:, None, None], freqs[labels][:, None, None]
        stripes = np.sin(f * (np.cos(a) * xx + np.sin(a) * yy) + phase)  # [n, 32, 32]
        img = colours[labels][:, None, None, :] + 0.25 * stripes[..., None]
        img = img * rng.uniform(0.8, 1.2, size=(n, 1, 1, 1)) + rng.normal(0, 0.08, size=(n, 32, 32, 3))
        return (np.clip(img, 0, 1) * 255).astype(np.uint8), labels.astype(np.int64)

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return train_x, train_y, test_x, test_y


def _fingerprint(root: Path, skip: Path) -> str:
    """A cache key from the file list with sizes and times: a changed tree gets a new cache."""
    h = hashlib.sha1(str(root.resolve()).encode())
    skip = skip.resolve()
    for p in sorted(root.rglob("*")):
        if p.is_file() and skip not in p.resolve().parents:
            st = p.stat()
            h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_cached(source: str, data_dir: str | Path, cache_dir: str | Path | None = None):
    """Load ``source`` as uint8 arrays, decoding a pickle or folder source once into an ``.npz`` cache.

    The cache lives in ``cache_dir``, by default ``<data_dir>/cache``: one file per data set, found again from any
    working directory. An unreadable cache file is set aside (``.corrupt``) and the images are decoded again.
    """
    data_dir = Path(data_dir)
    check_data_dir(data_dir)
    loader = load_folder if source == "folder" else load_pickle
    cache_dir = Path(cache_dir) if cache_dir else data_dir / "cache"
    cache = cache_dir / f"{source}-{_fingerprint(data_dir, skip=cache_dir)}.npz"
    if cache.exists():
        try:
            with np.load(cache) as z:
                return z["train_x"], z["train_y"], z["test_x"], z["test_y"]
        except Exception as err:  # truncated, overwritten, not an npz: whatever it is, it is not the images
            set_aside(cache, err)
    arrays = loader(data_dir)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")  # write then rename: never a half-written cache
        np.savez(tmp, train_x=arrays[0], train_y=arrays[1], test_x=arrays[2], test_y=arrays[3])
        tmp.replace(cache)
    except OSError as err:  # e.g. a read-only data dir: the run goes on, decoding costs again next time
        warnings.warn(
            f"could not write the decoded-image cache {cache} ({err.strerror}): the images are decoded "
            "again next time; --data.cache_dir picks a writable folder",
            RuntimeWarning,
            stacklevel=2,
        )
    return arrays


def set_aside(cache: Path, err: Exception) -> None:
    """Move an unreadable cache file out of the way (the images are decoded again), or say how to remove it."""
    aside = cache.with_suffix(".corrupt")
    try:
        cache.replace(aside)
    except OSError:
        raise CifarLightningError(
            f"the decoded-image cache {cache} is unreadable ({type(err).__name__}): delete it "
            f"(rm {cache}) and run again"
        ) from None
    warnings.warn(
        f"the decoded-image cache {cache} was unreadable ({type(err).__name__}): moved it to {aside}, "
        "decoding the images again",
        RuntimeWarning,
        stacklevel=3,
    )
