"""Import smoke tests: every package imports on a machine without CUDA."""

import importlib

import pytest


@pytest.mark.parametrize("name", ["dnnlib", "torch_utils.misc", "torch_utils.training_stats", "training.method"])
def test_imports(name):
    assert importlib.import_module(name) is not None
