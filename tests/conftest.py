"""Shared test configuration: CUDA marker, paths to the shipped and shared data."""

from __future__ import annotations

import os
import pathlib

import pytest
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
EMBEDDED_DATASET = REPO_ROOT / "datasets" / "emoji-smileys"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)


@pytest.fixture(autouse=True)
def _isolated_cache_dir(tmp_path, monkeypatch):
    """Give every test its own cache dir: no downloads or metric caches leak between tests or into ~/.cache."""
    cache = tmp_path / "dnnlib-cache"
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(cache))


@pytest.fixture
def shared_data_dir() -> pathlib.Path:
    """../shared/data, or skip when the checkout has no shared folder beside it (a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture
def embedded_dataset_dir() -> pathlib.Path:
    return EMBEDDED_DATASET


@pytest.fixture
def toy_detector(monkeypatch):
    """Replace Inception by a cheap colour-histogram detector; returns the batch sizes it saw."""
    import torch.nn.functional as F

    from metrics import runners
    from metrics.features import Detector

    seen = []

    def colour(img):
        seen.append(img.shape[0])
        return F.adaptive_avg_pool2d(img.float(), 4).flatten(1)

    monkeypatch.setattr(runners, "inception_features", lambda opts: Detector("toy-colour", colour))
    return seen


@pytest.fixture
def fresh_plugin_dispatch(monkeypatch):
    """No plugin choice or cached plugin leaks between tests of the op dispatch."""
    from torch_utils.ops import plugin_dispatch

    monkeypatch.delenv(plugin_dispatch.ENV_VAR, raising=False)
    plugin_dispatch.forget_plugins()
    yield
    plugin_dispatch.forget_plugins()
