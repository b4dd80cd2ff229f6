"""The decoded-image cache: in ``<data dir>/cache`` whatever the working directory; a corrupt file is set aside and
the images decoded again (or, when it cannot be moved, named with the command that removes it)."""

import numpy as np
import pytest

from cifar_lightning import sources
from cifar_lightning.errors import CifarLightningError
from tests.test_cli import SMALL, fails_with


def test_cache_lives_in_the_data_dir_for_every_working_directory(tmp_path, image_folder, monkeypatch):
    monkeypatch.delenv("PATH_DATASETS", raising=False)
    monkeypatch.chdir((tmp_path / "one").mkdir() or tmp_path / "one")
    first = sources.load_cached("folder", image_folder)
    files = list((image_folder / "cache").iterdir())
    assert len(files) == 1 and files[0].name.startswith("folder-") and files[0].suffix == ".npz"

    monkeypatch.chdir((tmp_path / "two").mkdir() or tmp_path / "two")
    monkeypatch.setattr(sources, "load_folder", lambda root: pytest.fail("decoded again although cached"))
    again = sources.load_cached("folder", image_folder)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not list(tmp_path.glob("*/data"))  # nothing in the working directories


def test_corrupt_cache_is_set_aside_and_rebuilt(tmp_path, image_folder):
    arrays = sources.load_cached("folder", image_folder, tmp_path / "cache")
    (cache,) = (tmp_path / "cache").glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:1000])  # a write cut short
    with pytest.warns(
        RuntimeWarning, match=f"cache {cache} was unreadable .*moved it to {cache.with_suffix('.corrupt')}"
    ):
        rebuilt = sources.load_cached("folder", image_folder, tmp_path / "cache")
    assert all(np.array_equal(a, b) for a, b in zip(arrays, rebuilt, strict=True))
    assert cache.with_suffix(".corrupt").is_file()
    assert all(
        np.array_equal(a, b)
        for a, b in zip(arrays, sources.load_cached("folder", image_folder, tmp_path / "cache"), strict=True)
    )


def test_corrupt_cache_that_cannot_be_moved_is_named_in_one_line(capsys, tmp_path, image_folder, monkeypatch):
    sources.load_cached("folder", image_folder, tmp_path / "cache")
    (cache,) = (tmp_path / "cache").glob("*.npz")
    cache.write_text("not an npz")

    def refuse(self, target):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(cache), "replace", refuse)
    with pytest.raises(CifarLightningError, match=f"delete it \\(rm {cache}\\)"):
        sources.load_cached("folder", image_folder, tmp_path / "cache")
    fails_with(
        capsys,
        [
            "fit",
            *SMALL,
            "--data.source",
            "folder",
            "--data.data_dir",
            str(image_folder),
            "--data.cache_dir",
            str(tmp_path / "cache"),
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
        ],
        f"delete it (rm {cache}) and run again",
    )
    assert not (tmp_path / "runs").exists()  # the failed run left no empty version folder
