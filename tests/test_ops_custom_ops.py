"""Plugin builder and dispatch policy: cache keys, build lock, env overrides, one-time warning."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import types
import warnings

import pytest
import torch

from torch_utils import custom_ops
from torch_utils.ops import bias_act, plugin_dispatch, upfirdn2d

FAKE_CUDA_TENSOR = types.SimpleNamespace(is_cuda=True, device="cuda:0")


pytestmark = pytest.mark.usefixtures("fresh_plugin_dispatch")


def _failing_loader():
    raise RuntimeError("nvcc exploded")


def test_cpu_tensors_take_reference_path_without_trying_a_build():
    calls = []
    assert plugin_dispatch.select_plugin(torch.zeros(1), "cuda", "op", lambda: calls.append(1)) is None
    assert calls == []


def test_cuda_tensor_build_failure_warns_once_then_falls_back():
    with pytest.warns(RuntimeWarning, match="op: the CUDA plugin is unavailable \\(RuntimeError: nvcc exploded\\)"):
        assert plugin_dispatch.select_plugin(FAKE_CUDA_TENSOR, "cuda", "op", _failing_loader) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        assert plugin_dispatch.select_plugin(FAKE_CUDA_TENSOR, "cuda", "op", _failing_loader) is None


def test_successful_plugin_is_built_once():
    plugin, calls = object(), []
    loader = lambda: calls.append(1) or plugin  # noqa: E731
    assert plugin_dispatch.select_plugin(FAKE_CUDA_TENSOR, "cuda", "op", loader) is plugin
    assert plugin_dispatch.select_plugin(FAKE_CUDA_TENSOR, "cuda", "op", loader) is plugin
    assert calls == [1]
    assert plugin_dispatch.select_plugin(FAKE_CUDA_TENSOR, "ref", "op", loader) is None


def test_env_ref_forces_reference_and_env_cuda_forces_plugin(monkeypatch):
    monkeypatch.setenv("FAKECLR_OPS", "ref")
    assert plugin_dispatch.select_plugin(FAKE_CUDA_TENSOR, "cuda", "op", lambda: object()) is None
    monkeypatch.setenv("FAKECLR_OPS", "cuda")
    with pytest.raises(RuntimeError, match="FAKECLR_OPS=cuda forces the CUDA plugin, but the input is on cpu"):
        plugin_dispatch.select_plugin(torch.zeros(1), "ref", "op", lambda: object())
    with pytest.raises(RuntimeError, match="could not be loaded: RuntimeError: nvcc exploded"):
        plugin_dispatch.select_plugin(FAKE_CUDA_TENSOR, "ref", "op", _failing_loader)
    monkeypatch.setenv("FAKECLR_OPS", "fast")
    with pytest.raises(ValueError, match="FAKECLR_OPS='fast' is not understood"):
        plugin_dispatch.select_plugin(torch.zeros(1), "cuda", "op", lambda: object())


def test_ops_raise_under_forced_cuda_with_cpu_tensors(monkeypatch):
    monkeypatch.setenv("FAKECLR_OPS", "cuda")
    with pytest.raises(RuntimeError, match="bias_act: FAKECLR_OPS=cuda"):
        bias_act.bias_act(torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="upfirdn2d: FAKECLR_OPS=cuda"):
        upfirdn2d.upfirdn2d(torch.zeros(1, 1, 4, 4), None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA failure reason")
def test_builder_explains_why_it_cannot_build_here():
    with pytest.raises(RuntimeError, match="no CUDA support|no CUDA device"):
        custom_ops.get_plugin_for_op("bias_act", verbosity="none")
    with pytest.raises(ValueError, match="no plugin is defined for 'fma'"):
        custom_ops.get_plugin_for_op("fma")


def test_verbosity_validation(monkeypatch):
    assert custom_ops.resolve_verbosity(None) == "brief"
    monkeypatch.setenv(custom_ops.VERBOSITY_ENV, "full")
    assert custom_ops.resolve_verbosity(None) == "full"
    assert custom_ops.resolve_verbosity("none") == "none"
    with pytest.raises(ValueError, match="must be one of none, brief, full"):
        custom_ops.resolve_verbosity("loud")


def test_build_directory_tracks_sources_and_torch_version(tmp_path, monkeypatch):
    monkeypatch.delenv(custom_ops.PLUGIN_DIR_ENV, raising=False)
    src = tmp_path / "k.cu"
    src.write_text("kernel v1")
    first = custom_ops.build_directory("m", [str(src)], {})
    assert first == custom_ops.build_directory("m", [str(src)], {})
    assert first.startswith(os.environ["DNNLIB_CACHE_DIR"])
    src.write_text("kernel v2")
    second = custom_ops.build_directory("m", [str(src)], {})
    assert second != first
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert custom_ops.build_directory("m", [str(src)], {}) != second
    assert custom_ops.build_directory("m", [str(src)], {"extra_cuda_cflags": ["-G"]}) != second
    monkeypatch.setenv(custom_ops.PLUGIN_DIR_ENV, str(tmp_path / "plugins"))
    assert custom_ops.build_directory("m", [str(src)], {}).startswith(str(tmp_path / "plugins" / "m-"))


def test_every_plugin_source_exists_and_is_staged(tmp_path):
    for spec in custom_ops.OP_PLUGINS.values():
        paths = [os.path.join(custom_ops.OPS_SOURCE_DIR, n) for n in spec["sources"] + spec["headers"]]
        copies = custom_ops.stage_sources(paths, str(tmp_path))
        for path, copy in zip(paths, copies):
            assert open(path, "rb").read() == open(copy, "rb").read()


def test_exclusive_lock_serialises_holders(tmp_path):
    lock = str(tmp_path / "build.lock")
    order = []

    def second_rank():
        with custom_ops.exclusive_lock(lock, poll_seconds=0.01):
            order.append("second")

    with custom_ops.exclusive_lock(lock, poll_seconds=0.01):
        assert open(lock).read() == f"{socket.gethostname()} {os.getpid()}"
        thread = threading.Thread(target=second_rank)
        thread.start()
        time.sleep(0.2)
        order.append("first")  # the other holder must still be waiting
    thread.join(5)
    assert order == ["first", "second"]
    assert not os.path.exists(lock)


def test_exclusive_lock_takes_over_from_a_dead_process_and_times_out_on_a_live_one(tmp_path):
    lock = tmp_path / "build.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(dead.stdout.strip())
    with custom_ops.exclusive_lock(str(lock), poll_seconds=0.01):
        assert lock.read_text() == f"{socket.gethostname()} {os.getpid()}"
    for holder in (str(os.getppid()),  # alive, on this machine
                   f"other-node-of-a-shared-cache {dead.stdout.strip()}"):  # not checkable from here
        lock.write_text(holder)
        with pytest.raises(TimeoutError, match="delete that file"):
            with custom_ops.exclusive_lock(str(lock), poll_seconds=0.01, timeout_seconds=0.05):
                pass


def test_ops_import_without_cuda_in_a_fresh_interpreter():
    code = ("import torch_utils.ops.bias_act, torch_utils.ops.upfirdn2d, torch_utils.ops.conv2d_resample, "
            "torch_utils.ops.conv2d_gradfix, torch_utils.ops.grid_sample_gradfix, torch_utils.ops.fma, "
            "torch_utils.custom_ops; import sys; assert 'torch.utils.cpp_extension' not in sys.modules")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr
