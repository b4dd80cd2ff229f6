"""requirements.txt, environment.yml and pyproject.toml must describe the same environment."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's


def parse(spec: str) -> tuple[str, str]:
    name, rest = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(.*)", spec).groups()
    name = CONDA_TO_PIP.get(name.lower(), name.lower())
    return name, rest.replace(" ", "")


def requirements() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return dict(parse(line) for line in lines if line.strip() and not line.startswith("#"))


def test_environment_yml_matches_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(parse(d) for d in env["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip")))
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section
    from_pypi = dict(parse(d.split("#")[0]) for d in pip_section if d != "-e .")  # e.g. ray: PyPI's wheels
    assert not set(conda) & set(from_pypi)
    assert {**conda, **from_pypi} == requirements()


def test_pyproject_dependencies_are_in_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = requirements()
    for dep in project["dependencies"]:
        name, spec = parse(dep)
        assert reqs.get(name) == spec, f"{name}: pyproject {spec!r} vs requirements {reqs.get(name)!r}"


def test_ranges_admit_the_offline_torch_and_the_gpu_image():
    from packaging.specifiers import SpecifierSet

    reqs = requirements()
    # torch 2.14.1 / torchvision 0.29.1 install from the dev machine's disk; the GPU image has 2.11 / 0.26
    for torch_version, vision_version in [("2.14.1", "0.29.1"), ("2.11.0", "0.26.0")]:
        assert torch_version in SpecifierSet(reqs["torch"])
        assert vision_version in SpecifierSet(reqs["torchvision"])
    assert "2.6.6" in SpecifierSet(reqs["lightning"])
