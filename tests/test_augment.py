"""AugmentPipe: identity at p=0, exact blits, colour formulas, impulse geometry, filter bank, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from training.augment import (ALL_AUGMENTATIONS, AUGPIPE_SPECS, SYM2_LOWPASS, SYM6_LOWPASS, AugmentPipe,
                              build_band_filter_bank, rotate2d, scale2d, translate2d)


def _images(n=8, c=3, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand([n, c, size, size], generator=gen) * 2 - 1


def _pipe(p=1.0, **kwargs):
    pipe = AugmentPipe(**kwargs)
    pipe.p.fill_(p)
    return pipe


@pytest.mark.parametrize("lowpass", [SYM2_LOWPASS, SYM6_LOWPASS])
def test_wavelets_are_orthonormal_lowpass_filters(lowpass):
    h = np.asarray(lowpass)
    assert h.sum() == pytest.approx(math.sqrt(2), abs=1e-12)
    for shift in range(h.size // 2):
        assert np.dot(h[:h.size - 2 * shift], h[2 * shift:]) == pytest.approx(float(shift == 0), abs=1e-9)


def test_band_filter_bank_partitions_the_spectrum():
    bank = build_band_filter_bank(SYM2_LOWPASS)
    assert bank.shape == (4, 43)
    impulse = np.zeros(43)
    impulse[21] = 1
    np.testing.assert_allclose(bank.sum(axis=0), impulse, atol=1e-12)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-12)  # zero phase
    # Band 0 is the low-pass (DC gain 1), the others reject DC; band 3 passes Nyquist.
    np.testing.assert_allclose(bank.sum(axis=1), [1, 0, 0, 0], atol=1e-12)
    nyquist = bank @ (-1.0) ** np.arange(43)
    np.testing.assert_allclose(np.abs(nyquist), [0, 0, 0, 1], atol=1e-12)


def test_presets_enable_the_documented_augmentations():
    assert set(AUGPIPE_SPECS["blit"]) == {"xflip", "rotate90", "xint"}
    assert set(AUGPIPE_SPECS["bgc"]) == {"xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
                                         "brightness", "contrast", "lumaflip", "hue", "saturation"}
    assert set(AUGPIPE_SPECS["bgcfnc"]) == set(AUGPIPE_SPECS["bgc"]) | {"imgfilter", "noise", "cutout"}
    assert len(AUGPIPE_SPECS) == 11 and all(v == 1 for spec in AUGPIPE_SPECS.values() for v in spec.values())


@pytest.mark.parametrize("name", ALL_AUGMENTATIONS)
def test_p_zero_is_identity(name):
    x = _images()
    y = _pipe(0.0, **{name: 1})(x)
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_p_zero_is_identity_through_the_resampling_path():
    x = _images(n=4)
    y = _pipe(0.0, exact_blit=False, **AUGPIPE_SPECS["bgcfnc"])(x)
    torch.testing.assert_close(y, x, atol=2e-5, rtol=0)


def _match_candidates(y, candidates):
    """Index of the candidate each sample equals exactly, or -1."""
    result = []
    for i in range(y.shape[0]):
        hits = [k for k, cand in enumerate(candidates) if torch.equal(y[i], cand[i])]
        result.append(hits[0] if hits else -1)
    return result


def test_xflip_at_p1_is_an_exact_flip_or_identity():
    torch.manual_seed(1)
    x = _images(n=32)
    hits = _match_candidates(_pipe(xflip=1)(x), [x, x.flip(3)])
    assert -1 not in hits and set(hits) == {0, 1}


def test_rotate90_at_p1_is_an_exact_quarter_turn():
    torch.manual_seed(2)
    x = _images(n=64)
    hits = _match_candidates(_pipe(rotate90=1)(x), [torch.rot90(x, k, dims=[2, 3]) for k in range(4)])
    assert -1 not in hits and set(hits) == {0, 1, 2, 3}


def _reflect_shift(x, dx, dy):
    """Independent reference: reflect-pad with numpy, then crop shifted by (dx, dy) pixels."""
    m = 8
    padded = np.pad(x.numpy(), [(0, 0), (m, m), (m, m)], mode="reflect")
    h, w = x.shape[1:]
    return torch.from_numpy(padded[:, m - dy:m - dy + h, m - dx:m - dx + w].copy())


@pytest.mark.parametrize("exact_blit", [True, False])
def test_xint_at_p1_is_an_integer_reflect_translation(exact_blit):
    torch.manual_seed(3)
    x = _images(n=12)
    y = _pipe(xint=1, exact_blit=exact_blit)(x)
    shifts = [(dx, dy) for dx in range(-4, 5) for dy in range(-4, 5)]  # xint_max 0.125 * 32 px = 4 px
    found = []
    for i in range(x.shape[0]):
        errors = [float((y[i] - _reflect_shift(x[i], dx, dy)).abs().max()) for dx, dy in shifts]
        best = int(np.argmin(errors))
        assert errors[best] < (1e-6 if exact_blit else 1e-4), f"sample {i}: no integer shift matches"
        found.append(shifts[best])
    assert len(set(found)) > 3


def test_resampled_flip_differs_only_slightly_from_the_exact_flip():
    # sym6 is not symmetric, so resampling a mirror image blurs it a little: the reason blits are exact here.
    x = torch.nn.functional.avg_pool2d(_images(n=2), 3, stride=1, padding=1)
    inv = scale2d(torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]))
    resampled = _pipe(exact_blit=False).warp(x, inv)
    err = (resampled - x.flip(3)).abs()
    assert 1e-3 < float(err.max()) < 0.5
    torch.testing.assert_close(_pipe().warp(x, inv), x.flip(3), atol=0, rtol=0)


@pytest.mark.parametrize("forward", [
    rotate2d(torch.tensor([0.5])),
    scale2d(torch.tensor([1.3]), torch.tensor([0.8])) @ rotate2d(torch.tensor([-1.0])),
    translate2d(torch.tensor([2.5]), torch.tensor([-1.25])) @ scale2d(torch.tensor([0.9]), torch.tensor([0.9])),
])
def test_geometric_transform_moves_an_impulse_where_its_matrix_says(forward):
    size = 32
    col, row = 21, 12
    src = (col - (size - 1) / 2, row - (size - 1) / 2)  # centred pixel coordinates of the impulse
    x = torch.zeros([1, 1, size, size])
    x[0, 0, row, col] = 1
    x = torch.nn.functional.conv2d(x, torch.ones([1, 1, 3, 3]) / 9, padding=1)  # blob, so resampling keeps it
    y = _pipe().warp(x, torch.linalg.inv(forward))
    peak = int(y.flatten().argmax())
    got = (peak % size - (size - 1) / 2, peak // size - (size - 1) / 2)
    want = (forward[0] @ torch.tensor([src[0], src[1], 1.0]))[:2]
    assert abs(got[0] - float(want[0])) <= 1 and abs(got[1] - float(want[1])) <= 1


def test_random_rotation_preserves_the_impulse_radius():
    torch.manual_seed(4)
    size = 32
    x = torch.zeros([16, 1, size, size])
    x[:, 0, 15, 25] = 1  # radius ~9.5 px from the centre
    x = torch.nn.functional.conv2d(x, torch.ones([1, 1, 3, 3]) / 9, padding=1)
    y = _pipe(rotate=1)(x)
    peaks = y.flatten(1).argmax(dim=1)
    radius = torch.hypot(peaks % size - 15.5, peaks // size - 15.5)
    assert torch.all((radius - math.hypot(25 - 15.5, 15 - 15.5)).abs() <= 1.5)


def test_brightness_adds_one_offset_per_sample_with_documented_std():
    torch.manual_seed(5)
    x = _images(n=4000, size=2)
    delta = _pipe(brightness=1)(x) - x
    offsets = delta.flatten(1)
    torch.testing.assert_close(offsets, offsets[:, :1].expand_as(offsets), atol=1e-6, rtol=0)
    assert float(offsets[:, 0].std()) == pytest.approx(0.2, rel=0.06)
    assert abs(float(offsets[:, 0].mean())) < 0.02


def test_contrast_scales_each_sample_by_a_log_normal_factor():
    torch.manual_seed(6)
    x = _images(n=4000, size=2).abs() + 0.1
    ratio = (_pipe(contrast=1)(x) / x).flatten(1)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5, rtol=1e-5)
    assert float(torch.log2(ratio[:, 0]).std()) == pytest.approx(0.5, rel=0.06)


def test_saturation_keeps_luma_and_scales_chroma():
    torch.manual_seed(7)
    x = _images(n=4000, size=2)
    y = _pipe(saturation=1)(x)
    torch.testing.assert_close(y.mean(dim=1), x.mean(dim=1), atol=1e-5, rtol=0)
    chroma_x, chroma_y = x - x.mean(dim=1, keepdim=True), y - y.mean(dim=1, keepdim=True)
    s = (chroma_y.flatten(1).norm(dim=1) / chroma_x.flatten(1).norm(dim=1))
    torch.testing.assert_close(chroma_y, chroma_x * s[:, None, None, None], atol=1e-4, rtol=1e-4)
    assert float(torch.log2(s).std()) == pytest.approx(1.0, rel=0.06)


def test_hue_rotation_keeps_luma_and_chroma_length():
    torch.manual_seed(8)
    x = _images(n=64, size=4)
    y = _pipe(hue=1)(x)
    torch.testing.assert_close(y.mean(dim=1), x.mean(dim=1), atol=1e-5, rtol=0)
    chroma = lambda t: (t - t.mean(dim=1, keepdim=True)).norm(dim=1)  # noqa: E731
    torch.testing.assert_close(chroma(y), chroma(x), atol=1e-5, rtol=0)
    assert float((y - x).abs().max()) > 0.1


def test_lumaflip_negates_luma_for_about_half_the_samples():
    torch.manual_seed(9)
    x = _images(n=400, size=2)
    y = _pipe(lumaflip=1)(x)
    flipped = torch.isclose(y.mean(dim=1), -x.mean(dim=1), atol=1e-5).all(dim=(1, 2))
    kept = torch.isclose(y, x, atol=1e-6).flatten(1).all(dim=1)
    assert torch.all(flipped | kept) and 150 < int(flipped.sum()) < 250


def test_colour_on_single_channel_images():
    torch.manual_seed(10)
    x = _images(n=4000, c=1, size=2)
    delta = (_pipe(brightness=1)(x) - x).flatten(1)
    assert float(delta[:, 0].std()) == pytest.approx(0.2, rel=0.06)


def test_image_filter_equals_separable_reflect_convolution():
    pipe = _pipe(imgfilter=1)
    x = _images(n=3, size=32)
    torch.manual_seed(11)
    gains = pipe.sample_band_gains(3, x.device)
    torch.manual_seed(11)
    y = pipe(x)
    kernels = gains.double().numpy() @ build_band_filter_bank(SYM2_LOWPASS)
    for i in range(3):
        ref = scipy.ndimage.correlate1d(x[i].double().numpy(), kernels[i], axis=2, mode="mirror")
        ref = scipy.ndimage.correlate1d(ref, kernels[i], axis=1, mode="mirror")
        np.testing.assert_allclose(y[i].numpy(), ref, atol=1e-5)
    assert not torch.allclose(gains, torch.ones_like(gains))


def test_noise_and_cutout():
    torch.manual_seed(12)
    x = torch.ones([400, 3, 32, 32])
    noise = (_pipe(noise=1)(x) - x).flatten(1).std(dim=1)
    assert float(noise.mean()) == pytest.approx(0.1 * math.sqrt(2 / math.pi), rel=0.1)
    y = _pipe(cutout=1)(x)
    zeroed = (y == 0).all(dim=1)  # [N, H, W]
    rows, cols = zeroed.any(dim=2).sum(dim=1), zeroed.any(dim=1).sum(dim=1)
    assert torch.all(zeroed.sum(dim=(1, 2)) == rows * cols)  # one axis-aligned rectangle
    assert int(rows.max()) == 16 and int(cols.max()) == 16 and torch.all(rows * cols > 0)
    assert torch.all((y == 0) | (y == 1))


def test_gradients_reach_the_input_twice():
    torch.manual_seed(13)
    x = _images(n=4).requires_grad_(True)
    y = _pipe(**AUGPIPE_SPECS["bgcfnc"])(x)
    (grad,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), [x], create_graph=True)
    assert torch.isfinite(grad).all() and float(grad.detach().abs().sum()) > 0
    (grad2,) = torch.autograd.grad(grad.square().sum(), [x])
    assert torch.isfinite(grad2).all()


def test_geometric_pipe_is_differentiable_through_resampling():
    torch.manual_seed(14)
    x = _images(n=2, c=1, size=8).double().requires_grad_(True)
    pipe = _pipe(scale=1, rotate=1)
    inv = pipe.sample_geometric_matrix(2, 8, 8, x.device).double()
    weights = torch.randn([2, 1, 8, 8], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: (pipe.warp(t, inv) * weights).sum(), [x], atol=1e-6)


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="xflip"):
        AugmentPipe(xflip=-1)
    with pytest.raises(ValueError, match="imgfilter_bands"):
        AugmentPipe(imgfilter_bands=[1, 1])
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        _pipe(xflip=1)(torch.zeros([3, 8, 8]))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        _pipe(hue=1)(torch.zeros([1, 2, 8, 8]))
    with pytest.raises(ValueError, match="imgfilter needs images larger"):
        _pipe(imgfilter=1)(torch.zeros([1, 3, 16, 16]))
