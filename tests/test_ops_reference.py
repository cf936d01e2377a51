"""Quick parity of the reference ops against independent direct formulations (float32, < 1e-5)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from ops_reference_formulas import (bias_act_numpy, conv2d_resample_direct, upfirdn2d_direct,
                                          upfirdn2d_loops)
from torch_utils.ops import bias_act, conv2d_gradfix, conv2d_resample, fma, grid_sample_gradfix, upfirdn2d

ACTS = ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"]


def _rand(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------
# bias_act

@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.5])
def test_bias_act_matches_numpy_formula(act, clamp):
    x, b = _rand(3, 5, 4, 2), _rand(5, seed=1)
    y = bias_act.bias_act(x, b, act=act, clamp=clamp, impl="cuda")  # CPU tensor: silently the reference
    expected = bias_act_numpy(x, b, 1, act, clamp=clamp)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert (y.double() - expected).abs().max().item() < 1e-5


def test_bias_act_dim_alpha_gain_and_no_bias():
    x, b = _rand(4, 3, 6), _rand(6, seed=2)
    y = bias_act.bias_act(x, b, dim=2, act="lrelu", alpha=0.1, gain=3.0)
    assert torch.allclose(y.double(), bias_act_numpy(x, b, 2, "lrelu", alpha=0.1, gain=3.0), atol=1e-5)
    assert torch.equal(bias_act.bias_act(x), x)  # linear, gain 1, no clamp: identity


def test_bias_act_default_gains_from_spec():
    gains = {name: spec.def_gain for name, spec in bias_act.ACTIVATIONS.items()}
    assert gains["lrelu"] == pytest.approx(2 ** 0.5) and gains["relu"] == pytest.approx(2 ** 0.5)
    assert gains["swish"] == pytest.approx(2 ** 0.5) and gains["tanh"] == 1 and gains["linear"] == 1
    assert bias_act.ACTIVATIONS["lrelu"].def_alpha == 0.2


@pytest.mark.parametrize("kwargs, message", [
    (dict(act="gelu"), "unknown act"),
    (dict(b=torch.zeros(4)), "must be 1-D with 5 elements"),
    (dict(clamp=-1), "clamp must be"),
    (dict(impl="triton"), "impl="),
])
def test_bias_act_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bias_act.bias_act(torch.zeros(2, 5, 3), **kwargs)


# ----------------------------------------------------------------------------
# upfirdn2d

FILTERS = {
    "sep4": lambda: upfirdn2d.setup_filter([1, 3, 3, 1], separable=True),
    "full4": lambda: upfirdn2d.setup_filter([1, 3, 3, 1]),
    "rect3x2": lambda: torch.tensor([[1.0, 2.0], [0.5, -1.0], [3.0, 0.25]]),  # not separable: depthwise path
    "outer3x2": lambda: torch.outer(torch.tensor([1.0, 2.0, 0.5]), torch.tensor([1.0, -3.0])),  # matrix path
}


def test_fir_matrix_takes_only_separable_filters():
    from torch_utils.ops import fir_matrix

    assert fir_matrix.separable_axes(FILTERS["rect3x2"](), False, 1.0) is None
    axes = fir_matrix.separable_axes(FILTERS["outer3x2"](), False, 2.0)
    # Correlation taps are the flipped filter; their outer product is the filter times the gain.
    rebuilt = torch.outer(torch.tensor(axes.taps_y[::-1]), torch.tensor(axes.taps_x[::-1]))
    assert torch.allclose(rebuilt, FILTERS["outer3x2"]() * 2.0, rtol=0, atol=1e-6)


def test_fir_matrix_only_where_it_pays_off():
    from torch_utils.ops import fir_matrix

    assert fir_matrix.pays_off(64, 33, (1, 1), (1, 1)) and not fir_matrix.pays_off(65, 8, (1, 1), (1, 1))
    assert fir_matrix.pays_off(256, 256, (2, 2), (1, 1)) and not fir_matrix.pays_off(257, 4, (1, 1), (2, 2))
    f = FILTERS["full4"]()
    for up, h in ((1, 66), (2, 33)):  # one either side of the limit, both against the direct formula
        x = _rand(1, 2, h, 5)
        y = upfirdn2d.upfirdn2d(x, f, up=up, padding=[2, 1, 2, 1], gain=up * up)
        expected = upfirdn2d_direct(x, f, up=(up, up), down=(1, 1), pad=(2, 1, 2, 1), flip_filter=False, gain=up * up)
        assert (y - expected).abs().max().item() < 1e-5


def test_fir_matrix_reduced_precision_rounds_once():
    # Under bf16 autocast the result comes back in bf16, computed in float32 and rounded once:
    # within one bf16 rounding (2**-8 relative) of the float32 result.
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = _rand(2, 3, 8, 8)
    expected = upfirdn2d.upsample2d(x, f)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = upfirdn2d.upsample2d(x, f)
    assert y.dtype == torch.bfloat16
    assert ((y.float() - expected).abs() <= expected.abs() * 2 ** -8 + 1e-6).all()


@pytest.mark.parametrize("up, down, pad", [
    (1, 1, (0, 0, 0, 0)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (4, 1, (3, 2, 1, 0)),
    (1, 4, (2, 0, 1, 3)), (2, 2, (-1, 2, 1, -2)), ((2, 1), (1, 2), (1, -1, 0, 2)),
])
@pytest.mark.parametrize("fname", list(FILTERS))
@pytest.mark.parametrize("flip", [False, True])
def test_upfirdn2d_matches_direct_formulation(up, down, pad, fname, flip):
    f = FILTERS[fname]()
    x = _rand(2, 3, 7, 9)
    y = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=list(pad), flip_filter=flip, gain=1.5)
    up2 = (up, up) if isinstance(up, int) else up
    down2 = (down, down) if isinstance(down, int) else down
    expected = upfirdn2d_direct(x, f, up=up2, down=down2, pad=pad, flip_filter=flip, gain=1.5)
    assert y.shape == expected.shape
    assert (y - expected).abs().max().item() < 1e-5


def test_direct_formulation_agrees_with_explicit_loops():
    # Guards the guard: the conv2d-based formulation against per-sample sums.
    f = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.25, 3.0]], dtype=torch.float64)
    x = _rand(1, 2, 4, 5, dtype=torch.float64)
    for up, down, pad in [((2, 3), (1, 2), (2, -1, 1, 3)), ((1, 1), (3, 1), (-1, 0, 0, -1))]:
        a = upfirdn2d_direct(x, f, up=up, down=down, pad=pad, flip_filter=False, gain=2.0)
        b = upfirdn2d_loops(x, f, up=up, down=down, pad=pad, flip_filter=False, gain=2.0)
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-12)


def test_setup_filter_rules():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32 and f.sum().item() == pytest.approx(1)
    assert torch.allclose(f, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    assert upfirdn2d.setup_filter(list(range(1, 9))).shape == (8,)  # >= 8 taps: separable by default
    assert upfirdn2d.setup_filter(None).tolist() == [[1.0]]
    assert upfirdn2d.setup_filter([1, 2], flip_filter=True, normalize=False).tolist() == [[4, 2], [2, 1]]
    assert upfirdn2d.setup_filter([1, 1], gain=4).sum().item() == pytest.approx(4)
    assert upfirdn2d.setup_filter([1, 1], gain=4, separable=True).sum().item() == pytest.approx(2)


def test_resampling_helpers_sizes_and_values():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = _rand(2, 3, 8, 6)
    assert upfirdn2d.upsample2d(x, f).shape == (2, 3, 16, 12)
    assert upfirdn2d.downsample2d(x, f).shape == (2, 3, 4, 3)
    assert upfirdn2d.filter2d(x, f).shape == x.shape
    assert upfirdn2d.filter2d(x, f, padding=1).shape == (2, 3, 10, 8)
    ones = torch.ones(1, 1, 8, 8)  # a constant image stays constant away from the borders
    assert torch.allclose(upfirdn2d.upsample2d(ones, f)[..., 3:-3, 3:-3], torch.ones(1, 1, 10, 10))
    assert torch.allclose(upfirdn2d.downsample2d(ones, f)[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))
    expected = upfirdn2d_direct(x, f, up=(2, 2), pad=(2, 1, 2, 1), gain=4.0)
    assert (upfirdn2d.upsample2d(x, f) - expected).abs().max().item() < 1e-5


def test_upfirdn2d_bad_arguments():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="setup_filter"):
        upfirdn2d.upfirdn2d(x, torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="smaller than the filter"):
        upfirdn2d.upfirdn2d(x, upfirdn2d.setup_filter([1, 3, 3, 1]), padding=-1)
    with pytest.raises(ValueError, match="4-D NCHW"):
        upfirdn2d.upfirdn2d(torch.zeros(4, 4), None)


# ----------------------------------------------------------------------------
# conv2d_resample

def _total_pad(f, up, down, padding):
    fw = 1 if f is None else f.shape[-1]
    p = [padding] * 4 if isinstance(padding, int) else list(padding)
    if up > 1:
        p = [p[0] + (fw + up - 1) // 2, p[1] + (fw - up) // 2, p[2] + (fw + up - 1) // 2, p[3] + (fw - up) // 2]
    if down > 1:
        p = [p[0] + (fw - down + 1) // 2, p[1] + (fw - down) // 2, p[2] + (fw - down + 1) // 2, p[3] + (fw - down) // 2]
    return tuple(p)


@pytest.mark.parametrize("k, up, down, padding, groups, flip_weight", [
    (3, 1, 1, 1, 1, True), (3, 1, 1, (1, 0, 2, 1), 1, True), (3, 1, 1, -1 , 1, False),
    (1, 1, 2, 0, 1, True), (1, 2, 1, 0, 1, False), (3, 1, 2, 0, 1, True), (3, 2, 1, 1, 1, False),
    (3, 2, 2, 0, 1, False), (3, 2, 1, 1, 2, False), (3, 1, 2, 1, 2, True), (2, 2, 1, (0, 1, 1, 0), 1, True),
])
@pytest.mark.parametrize("sep", [False, True])
def test_conv2d_resample_matches_direct(k, up, down, padding, groups, flip_weight, sep):
    f = upfirdn2d.setup_filter([1, 3, 3, 1], separable=sep)
    x, w = _rand(2, 4, 8, 8), _rand(6, 4 // groups, k, k, seed=3)
    y = conv2d_resample.conv2d_resample(x, w, f=f, up=up, down=down, padding=padding, groups=groups,
                                        flip_weight=flip_weight)
    expected = conv2d_resample_direct(x, w, f, up, down, _total_pad(f, up, down, padding), groups, flip_weight)
    assert y.shape == expected.shape
    assert (y - expected).abs().max().item() < 1e-5


def test_conv2d_resample_layer_shapes():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x, w = _rand(2, 4, 8, 8), _rand(5, 4, 3, 3)
    assert conv2d_resample.conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=False).shape == (2, 5, 16, 16)
    assert conv2d_resample.conv2d_resample(x, w, f=f, down=2, padding=1).shape == (2, 5, 4, 4)
    assert conv2d_resample.conv2d_resample(x, w, padding=1).shape == (2, 5, 8, 8)


# ----------------------------------------------------------------------------
# conv2d_gradfix, grid_sample_gradfix, fma

def test_conv2d_gradfix_values_and_gradients_match_torch():
    x = _rand(2, 4, 7, 6, dtype=torch.float64).requires_grad_()
    w = _rand(6, 2, 3, 3, dtype=torch.float64, seed=1).requires_grad_()
    b = _rand(6, dtype=torch.float64, seed=2).requires_grad_()
    ours = conv2d_gradfix.conv2d(x, w, b, stride=2, padding=1, groups=2)
    theirs = F.conv2d(x, w, b, stride=2, padding=1, groups=2)
    assert torch.allclose(ours, theirs, atol=1e-12)
    g_ours = torch.autograd.grad(ours.square().sum(), [x, w, b])
    g_theirs = torch.autograd.grad(theirs.square().sum(), [x, w, b])
    for a, e in zip(g_ours, g_theirs):
        assert torch.allclose(a, e, atol=1e-10)


def test_strided_transposed_conv_in_nhwc_equals_torch():
    """From 32 px output the CPU runs strided transposed convolutions in NHWC (faster there); values, layout and the
    gradients through the adjoints (the D input gradient of a 2x-down conv takes this path) stay torch's."""
    x = _rand(2, 4, 16, 16).requires_grad_()
    w = _rand(4, 3, 3, 3, seed=1).requires_grad_()
    ours = conv2d_gradfix.conv_transpose2d(x, w, stride=2)  # [2, 3, 33, 33]
    theirs = F.conv_transpose2d(x, w, stride=2)
    assert ours.shape == (2, 3, 33, 33) and ours.is_contiguous()
    assert (ours - theirs).abs().max().item() < 1e-5  # float32 sums in another order at most
    g_ours = torch.autograd.grad(ours.square().sum(), [x, w], create_graph=True)
    g_theirs = torch.autograd.grad(theirs.square().sum(), [x, w], create_graph=True)
    for a, e in zip(g_ours, g_theirs):
        assert (a - e).abs().max().item() <= 1e-4 * e.abs().max().item()
    y = _rand(2, 3, 33, 33, seed=2).requires_grad_()  # the input gradient of a stride-2 conv: the same path
    gy = torch.autograd.grad(conv2d_gradfix.conv2d(y, w.detach(), stride=2).square().sum(), [y])[0]
    gy_torch = torch.autograd.grad(F.conv2d(y, w.detach(), stride=2).square().sum(), [y])[0]
    assert (gy - gy_torch).abs().max().item() <= 1e-4 * gy_torch.abs().max().item()


def test_no_weight_gradients_skips_only_weight_grads():
    x = _rand(1, 2, 5, 5).requires_grad_()
    w = _rand(3, 2, 3, 3, seed=1).requires_grad_()
    with conv2d_gradfix.no_weight_gradients():
        gx, gw = torch.autograd.grad(conv2d_gradfix.conv2d(x, w).sum(), [x, w], allow_unused=True)
    assert gw is None and gx.abs().sum() > 0
    assert not conv2d_gradfix.weight_gradients_disabled()
    gw = torch.autograd.grad(conv2d_gradfix.conv2d(x, w).sum(), [w])[0]
    assert torch.allclose(gw, torch.autograd.grad(F.conv2d(x, w).sum(), [w])[0], atol=1e-5)


def test_grid_sample_matches_torch():
    x = _rand(2, 3, 5, 6)
    grid = _rand(2, 4, 7, 2, seed=1) * 0.8
    expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert (grid_sample_gradfix.grid_sample(x, grid) - expected).abs().max().item() < 1e-5
    assert (grid_sample_gradfix.grid_sample_ref(x, grid) - expected).abs().max().item() < 1e-5


def test_fma_broadcasting_gradients():
    a = _rand(3, 1, 4, dtype=torch.float64).requires_grad_()
    b = _rand(2, 1, dtype=torch.float64, seed=1).requires_grad_()
    c = _rand(4, dtype=torch.float64, seed=2).requires_grad_()
    out = fma.fma(a, b, c)
    assert torch.allclose(out, a * b + c)
    grads = torch.autograd.grad((out * out).sum(), [a, b, c])
    expected = torch.autograd.grad(((a * b + c) ** 2).sum(), [a, b, c])
    for g, e in zip(grads, expected):
        assert g.shape == e.shape and torch.allclose(g, e)
