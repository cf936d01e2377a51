"""The self-check a freshly loaded CUDA plugin passes before use, run on the CPU with the fake
plugins of tests/ops_fake_plugins.py (the exact kernel contracts) and with broken variants of them."""

from __future__ import annotations

import types
import warnings

import pytest
import torch

from ops_fake_plugins import FakeBiasActPlugin, FakeUpFirDn2dPlugin
from torch_utils.ops import bias_act, plugin_dispatch, upfirdn2d

CPU = torch.device("cpu")
# What select_plugin sees of a CUDA tensor; the device is the CPU so that the check runs here.
CUDA_LIKE_INPUT = types.SimpleNamespace(is_cuda=True, device=CPU)


pytestmark = pytest.mark.usefixtures("fresh_plugin_dispatch")


class GradientOffBiasAct(FakeBiasActPlugin):
    """Right forward, gradient 0.1 % too large: within float16's tolerance, not float32's."""

    @staticmethod
    def bias_act(x, b, g, dim, act_id, order, alpha, gain, clamp):
        out = FakeBiasActPlugin.bias_act(x, b, g, dim, act_id, order, alpha, gain, clamp)
        return out * 1.001 if order == 1 else out


class HalfPrecisionOffBiasAct(FakeBiasActPlugin):
    """Right in float32, 5 % off in float16 (e.g. a broken half-precision load)."""

    @staticmethod
    def bias_act(x, b, g, dim, act_id, order, alpha, gain, clamp):
        out = FakeBiasActPlugin.bias_act(x, b, g, dim, act_id, order, alpha, gain, clamp)
        return out * 1.05 if x.dtype == torch.float16 and order == 0 else out


class ShiftedUpFirDn2d(FakeUpFirDn2dPlugin):
    """Pads one pixel more on the left and one less on the right (an off-by-one in the kernel)."""

    @staticmethod
    def upfirdn2d(x, f, upx, upy, downx, downy, x0, x1, y0, y1, flip_filter, gain):
        return FakeUpFirDn2dPlugin.upfirdn2d(x, f, upx, upy, downx, downy, x0 + 1, x1 - 1, y0, y1, flip_filter, gain)


def test_correct_plugins_pass_in_both_precisions_without_touching_the_global_rng():
    rng = torch.get_rng_state()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # how generate.py / --bf16 may call first
        results = [bias_act.self_check(FakeBiasActPlugin, CPU), upfirdn2d.self_check(FakeUpFirDn2dPlugin, CPU)]
    assert torch.equal(torch.get_rng_state(), rng)
    for result in results:
        assert result.passed, result.failures
        assert result.worst_error_ratio < 0.5 and result.milliseconds > 0


@pytest.mark.parametrize("module, plugin, expected", [
    (bias_act, GradientOffBiasAct, "lrelu clamp=1.0, float32 gradient of input 0: error 1.00e-03 > tolerance 1e-04"),
    (bias_act, HalfPrecisionOffBiasAct, "float16 forward: error"),
    (upfirdn2d, ShiftedUpFirDn2d, "upsample2d, float32 forward: error"),
])
def test_wrong_plugins_are_caught_and_named(module, plugin, expected):
    result = module.self_check(plugin, CPU)
    assert not result.passed and expected in result.summary()
    assert result.worst_error_ratio > 1
    if plugin is HalfPrecisionOffBiasAct:
        assert all("float16" in failure for failure in result.failures)


def test_disagreeing_plugin_warns_once_and_the_reference_path_is_used():
    loads = []
    loader = lambda: loads.append(1) or GradientOffBiasAct  # noqa: E731
    with pytest.warns(RuntimeWarning, match=r"bias_act: the CUDA plugin disagrees with the reference path "
                                            r"\(lrelu clamp=1.0, float32 gradient of input 0: error 1.00e-03"):
        assert plugin_dispatch.select_plugin(CUDA_LIKE_INPUT, "cuda", "bias_act", loader, bias_act.self_check) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no second check
        assert plugin_dispatch.select_plugin(CUDA_LIKE_INPUT, "cuda", "bias_act", loader, bias_act.self_check) is None
    assert loads == [1]
    assert not plugin_dispatch.self_check_results()["bias_act"].passed


def test_forced_cuda_turns_a_disagreement_into_an_error(monkeypatch):
    monkeypatch.setenv(plugin_dispatch.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match=r"upfirdn2d: FAKECLR_OPS=cuda but the CUDA plugin failed its self-check "
                                           r"against the reference path: upsample2d, float32 forward"):
        plugin_dispatch.select_plugin(CUDA_LIKE_INPUT, "cuda", "upfirdn2d", lambda: ShiftedUpFirDn2d,
                                      upfirdn2d.self_check)


def test_agreeing_plugin_is_used_and_its_check_is_reported():
    checks = []

    def counting_check(plugin, device):
        checks.append(device)
        return upfirdn2d.self_check(plugin, device)

    for _ in range(2):
        assert plugin_dispatch.select_plugin(CUDA_LIKE_INPUT, "cuda", "upfirdn2d", lambda: FakeUpFirDn2dPlugin,
                                             counting_check) is FakeUpFirDn2dPlugin
    assert checks == [CPU]  # once per process, on the input's device
    result = plugin_dispatch.self_check_results()["upfirdn2d"]
    assert result.passed and result.device == "cpu"


@pytest.fixture
def tf32_flags_on():
    """Both TF32 flags on for the test, restored by plain assignment afterwards.

    Not monkeypatch.setattr: torch's cuBLAS flag object serves `allow_tf32` through __getattr__/__setattr__, and
    newer pytest releases undo a patch of such an attribute with delattr, which that object refuses.
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_the_check_compares_in_true_float32_and_restores_the_tf32_flags(tf32_flags_on):
    seen = []

    class RecordingBiasAct(FakeBiasActPlugin):
        @staticmethod
        def bias_act(*args):
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return FakeBiasActPlugin.bias_act(*args)

    assert bias_act.self_check(RecordingBiasAct, CPU).passed
    assert seen and set(seen) == {(False, False)}
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
