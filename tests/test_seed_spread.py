"""seed_spread: mean and spread over seeds, and whether a difference is beyond the seed noise."""

import pytest

from cifar_lightning.errors import CifarLightningError
from cifar_lightning.seed_spread import compare, seed_table


def test_seed_table_gives_percent_mean_and_sample_std():
    table = seed_table({"a": [0.60, 0.62, 0.64], "b": [0.5]})
    assert table.loc["a", "mean"] == pytest.approx(62.0)
    assert table.loc["a", "std"] == pytest.approx(2.0)  # sample std (ddof=1) of 60, 62, 64
    assert table.loc["a", "seeds"] == 3 and table.loc["a", "runs"] == "60.0, 62.0, 64.0"
    assert table.loc["b", "std"] == 0.0


def test_compare_calls_a_difference_beyond_twice_the_larger_std():
    scores = {"aug": [0.70, 0.71, 0.72], "none": [0.60, 0.61, 0.62]}
    result = compare(scores, "aug", "none")
    assert result["difference"] == pytest.approx(10.0)
    assert result["noise"] == pytest.approx(2.0)
    assert result["beyond_noise"] and "beyond" in result["sentence"]


def test_compare_keeps_a_small_difference_within_the_noise():
    scores = {"aug": [0.60, 0.65, 0.62], "none": [0.61, 0.60, 0.63]}
    result = compare(scores, "aug", "none")
    assert not result["beyond_noise"] and "within" in result["sentence"]
    assert result["noise"] == pytest.approx(2 * seed_table(scores)["std"].max())


def test_compare_gives_no_verdict_from_one_seed():
    result = compare({"a": [0.9], "b": [0.1]}, "a", "b")
    assert not result["beyond_noise"] and "no verdict" in result["sentence"]


def test_compare_names_a_missing_setting():
    with pytest.raises(CifarLightningError, match="compare needs both"):
        compare({"a": [0.5]}, "a", "b")
