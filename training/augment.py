"""The ADA augmentation pipeline: geometric, colour, filter and corruption augmentations.

Every augmentation is applied per sample with probability `multiplier * p`, where `p` is a
scalar buffer the training loop sets (fixed) or adapts (ADA). The pipe is differentiable in
the images, so G receives gradients through it and R1 can differentiate through it twice.

Stages, in order:
  1. geometric (xflip, rotate90, xint, scale, rotate, aniso, xfrac): one inverse 2-D matrix per
     sample, executed once; matrices that map the pixel grid onto itself (pure pixel blits) are
     executed exactly by index gathering, all others by sym6 2x resampling (see `_warp_resampled`).
  2. colour (brightness, contrast, lumaflip, hue, saturation): one 4x4 matrix per sample.
  3. image-space filter: per-sample gains of four octave bands built from the sym2 wavelet.
  4. corruptions: additive Gaussian noise, cutout.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from torch_utils import persistence
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix, upfirdn2d

# ----------------------------------------------------------------------------
# Standard published Daubechies symlet low-pass (decomposition) coefficients; orthonormal.

SYM2_LOWPASS = (
    -0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025,
)
SYM6_LOWPASS = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)

# Assumed power of the four filter bands (lowest first): a rough 1/f image spectrum.
BAND_EXPECTED_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)

_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)

AUGPIPE_SPECS: dict[str, dict[str, float]] = {
    "blit": dict(_BLIT),
    "geom": dict(_GEOM),
    "color": dict(_COLOR),
    "filter": dict(imgfilter=1),
    "noise": dict(noise=1),
    "cutout": dict(cutout=1),
    "bg": dict(_BLIT, **_GEOM),
    "bgc": dict(_BLIT, **_GEOM, **_COLOR),
    "bgcf": dict(_BLIT, **_GEOM, **_COLOR, imgfilter=1),
    "bgcfn": dict(_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1),
    "bgcfnc": dict(_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1, cutout=1),
}

GEOMETRIC_AUGMENTATIONS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR_AUGMENTATIONS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
ALL_AUGMENTATIONS = GEOMETRIC_AUGMENTATIONS + COLOR_AUGMENTATIONS + ("imgfilter", "noise", "cutout")


def build_band_filter_bank(lowpass: Sequence[float], num_bands: int = 4) -> np.ndarray:
    """Rows = zero-phase filters of `num_bands` octave bands (row 0 lowest); the rows sum to an impulse.

    Built a-trous style: each step stretches the existing bands one octave down (zero insertion,
    then the low-pass power filter) and adds the high-pass power filter as the new top band.
    Because |H(z)|^2 + |H(-z)|^2 = 2 for an orthogonal wavelet, the bands always sum to identity.
    """
    lo = np.asarray(lowpass, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo_power = np.convolve(lo, lo[::-1]) / 2
    hi_power = np.convolve(hi, hi[::-1]) / 2
    bank = np.zeros([num_bands, 1])
    bank[0, 0] = 1
    for band in range(1, num_bands):
        stretched = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        stretched[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo_power) for row in stretched])
        start = (bank.shape[1] - hi_power.size) // 2
        bank[band, start:start + hi_power.size] += hi_power
    return bank


# ----------------------------------------------------------------------------
# Batched homogeneous matrices; every argument is a [N] tensor (or a number).

def _full(n: int, value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.full([n], value, dtype=like.dtype, device=like.device)


def _matrix(rows: list[list], like: torch.Tensor) -> torch.Tensor:
    """[n, R, C] from R rows of C entries ([n] tensors or numbers): one stack, one constant per distinct number
    (the pipe builds a dozen such matrices per D pass; per-entry tensors made it hundreds of small ops)."""
    n = like.shape[0]
    constants: dict[float, torch.Tensor] = {}

    def column(value) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            value = value.to(dtype=like.dtype, device=like.device)
            return value if value.shape == (n,) else value.expand(n)
        if value not in constants:
            constants[value] = torch.full([n], float(value), dtype=like.dtype, device=like.device)
        return constants[value]

    entries = [column(value) for row in rows for value in row]
    return torch.stack(entries, dim=-1).reshape(n, len(rows), len(rows[0]))


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def translate3d(t: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def scale3d(s: torch.Tensor) -> torch.Tensor:
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotation by `theta` about the unit `axis` ([3]) in homogeneous 4x4 form (Rodrigues)."""
    x, y, z = axis
    c, s = torch.cos(theta), torch.sin(theta)
    d = 1 - c
    return _matrix([
        [x * x * d + c, x * y * d - z * s, x * z * d + y * s, 0],
        [y * x * d + z * s, y * y * d + c, y * z * d - x * s, 0],
        [z * x * d - y * s, z * y * d + x * s, z * z * d + c, 0],
        [0, 0, 0, 1],
    ], theta)


# ----------------------------------------------------------------------------

@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    """Per-sample stochastic augmentation; `p` (buffer) scales every probability multiplier."""

    def __init__(self,
                 xflip: float = 0, rotate90: float = 0, xint: float = 0, xint_max: float = 0.125,
                 scale: float = 0, rotate: float = 0, aniso: float = 0, xfrac: float = 0,
                 scale_std: float = 0.2, rotate_max: float = 1, aniso_std: float = 0.2, xfrac_std: float = 0.125,
                 brightness: float = 0, contrast: float = 0, lumaflip: float = 0, hue: float = 0, saturation: float = 0,
                 brightness_std: float = 0.2, contrast_std: float = 0.5, hue_max: float = 1, saturation_std: float = 1,
                 imgfilter: float = 0, imgfilter_bands: Sequence[float] = (1, 1, 1, 1), imgfilter_std: float = 1,
                 noise: float = 0, cutout: float = 0, noise_std: float = 0.1, cutout_size: float = 0.5,
                 exact_blit: bool = True):
        super().__init__()
        self.register_buffer("p", torch.ones([]))  # overall strength; the training loop sets or adapts it
        multipliers = dict(xflip=xflip, rotate90=rotate90, xint=xint, scale=scale, rotate=rotate, aniso=aniso,
                           xfrac=xfrac, brightness=brightness, contrast=contrast, lumaflip=lumaflip, hue=hue,
                           saturation=saturation, imgfilter=imgfilter, noise=noise, cutout=cutout)
        strengths = dict(xint_max=xint_max, scale_std=scale_std, rotate_max=rotate_max, aniso_std=aniso_std,
                         xfrac_std=xfrac_std, brightness_std=brightness_std, contrast_std=contrast_std,
                         hue_max=hue_max, saturation_std=saturation_std, imgfilter_std=imgfilter_std,
                         noise_std=noise_std, cutout_size=cutout_size)
        for name, value in {**multipliers, **strengths}.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"AugmentPipe: {name}={value!r} must be a finite number >= 0")
            setattr(self, name, float(value))
        if len(imgfilter_bands) != 4 or any(float(b) < 0 for b in imgfilter_bands):
            raise ValueError(f"AugmentPipe: imgfilter_bands={list(imgfilter_bands)!r} must be 4 numbers >= 0")
        self.imgfilter_bands = [float(b) for b in imgfilter_bands]
        self.exact_blit = bool(exact_blit)

        # Normalised to unit sum; 12 taps, so upfirdn2d applies it separably.
        self.register_buffer("sym6_filter", upfirdn2d.setup_filter(list(SYM6_LOWPASS)))
        bank = build_band_filter_bank(SYM2_LOWPASS, num_bands=4)
        self.register_buffer("band_filter_bank", torch.tensor(bank, dtype=torch.float32))

    def extra_repr(self) -> str:
        enabled = [f"{name}={getattr(self, name):g}" for name in ALL_AUGMENTATIONS if getattr(self, name) > 0]
        return ", ".join(enabled) or "no augmentations enabled"

    # ------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            raise ValueError("AugmentPipe: expected a float tensor [N, C, H, W] in [-1, 1]")
        num_channels = images.shape[1]
        if self._any_enabled(COLOR_AUGMENTATIONS) and num_channels not in (1, 3):
            raise ValueError(f"AugmentPipe: colour augmentations need 1 or 3 channels, got {num_channels}")
        if self._any_enabled(GEOMETRIC_AUGMENTATIONS):
            images = self._apply_geometric(images)
        if self._any_enabled(COLOR_AUGMENTATIONS):
            images = self._apply_color(images)
        if self.imgfilter > 0:
            images = self._apply_filter(images)
        if self.noise > 0:
            images = self._apply_noise(images)
        if self.cutout > 0:
            images = self._apply_cutout(images)
        return images

    def _any_enabled(self, names: Sequence[str]) -> bool:
        return any(getattr(self, name) > 0 for name in names)

    def _gate(self, multiplier: float, n: int, device: torch.device, prob: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample Bernoulli decision, computed on the device (no host sync)."""
        if prob is None:
            prob = multiplier * self.p
        return torch.rand([n], device=device) < prob

    # ------------------------------------------------------------------ geometric

    def sample_geometric_matrix(self, n: int, width: int, height: int, device: torch.device) -> torch.Tensor:
        """Inverse matrices [n, 3, 3] mapping output to input pixel coordinates (origin at the image centre)."""
        eye = torch.eye(3, device=device).expand(n, 3, 3)
        ones, zeros = torch.ones([n], device=device), torch.zeros([n], device=device)
        inv = eye
        if self.xflip > 0:
            flip = torch.where(self._gate(self.xflip, n, device), torch.randint(0, 2, [n], device=device).float(), zeros)
            inv = inv @ scale2d(1 - 2 * flip, ones)
        if self.rotate90 > 0:
            quarter = torch.where(self._gate(self.rotate90, n, device), torch.randint(0, 4, [n], device=device).float(), zeros)
            inv = inv @ rotate2d(-math.pi / 2 * quarter)
        if self.xint > 0:
            shift = (torch.rand([n, 2], device=device) * 2 - 1) * self.xint_max
            shift = torch.where(self._gate(self.xint, n, device)[:, None], shift, torch.zeros_like(shift))
            inv = inv @ translate2d(-torch.round(shift[:, 0] * width), -torch.round(shift[:, 1] * height))
        if self.scale > 0:
            s = torch.where(self._gate(self.scale, n, device), torch.exp2(torch.randn([n], device=device) * self.scale_std), ones)
            inv = inv @ scale2d(1 / s, 1 / s)
        # Two independent rotations around the anisotropic scaling; P(either) = rotate * p.
        p_rot = 1 - torch.sqrt(1 - (self.rotate * self.p).clamp(0, 1))
        if self.rotate > 0:
            inv = inv @ rotate2d(-self._random_angle(n, device, p_rot))
        if self.aniso > 0:
            s = torch.where(self._gate(self.aniso, n, device), torch.exp2(torch.randn([n], device=device) * self.aniso_std), ones)
            inv = inv @ scale2d(1 / s, s)
        if self.rotate > 0:
            inv = inv @ rotate2d(-self._random_angle(n, device, p_rot))
        if self.xfrac > 0:
            shift = torch.randn([n, 2], device=device) * self.xfrac_std
            shift = torch.where(self._gate(self.xfrac, n, device)[:, None], shift, torch.zeros_like(shift))
            inv = inv @ translate2d(-shift[:, 0] * width, -shift[:, 1] * height)
        return inv

    def _random_angle(self, n: int, device: torch.device, prob: torch.Tensor) -> torch.Tensor:
        theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.rotate_max
        return torch.where(self._gate(0, n, device, prob=prob), theta, torch.zeros_like(theta))

    def _apply_geometric(self, images: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        inv = self.sample_geometric_matrix(n, width, height, images.device)
        return self.warp(images, inv)

    def warp(self, images: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        """Apply per-sample inverse matrices; pixel blits exactly, the rest by sym6 resampling."""
        if not self.exact_blit:
            return self._warp_resampled(images, inv)
        is_blit = _is_pixel_blit(inv, images.shape[3], images.shape[2])
        if bool(is_blit.all()):
            return _warp_blit(images, inv)
        if not bool(is_blit.any()):
            return self._warp_resampled(images, inv)
        out = torch.empty_like(images)
        blit_idx, other_idx = is_blit.nonzero()[:, 0], (~is_blit).nonzero()[:, 0]
        out = out.index_put((blit_idx,), _warp_blit(images[blit_idx], inv[blit_idx]))
        return out.index_put((other_idx,), self._warp_resampled(images[other_idx], inv[other_idx]))

    def _warp_resampled(self, images: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        """Reflect-pad, upsample 2x (sym6), bilinear resample, downsample 2x (sym6, adjoint), crop.

        The orthonormal sym6 pair makes the up/down round trip exact, so only the bilinear step
        at sub-pixel positions loses detail, at twice the resolution where it matters least.
        """
        n, c, height, width = images.shape
        filt = self.sym6_filter
        filter_margin = filt.numel() // 4  # original-grid pixels the down-filter reads beyond the crop
        inv = inv.to(images.dtype)

        # How far (in pixels) the output corners reach outside the image, plus the filter margin.
        cx, cy = (width - 1) / 2, (height - 1) / 2
        corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]],
                               dtype=inv.dtype, device=inv.device)
        src = inv @ corners  # [n, 3, 4]
        reach = torch.stack([(-src[:, 0]).max(), (-src[:, 1]).max(), src[:, 0].max(), src[:, 1].max()])
        reach = reach + torch.tensor([2 * filter_margin - cx, 2 * filter_margin - cy] * 2, dtype=inv.dtype, device=inv.device)
        limit = torch.tensor([width - 1, height - 1] * 2, dtype=inv.dtype, device=inv.device)
        left, top, right, bottom = [int(v) for v in torch.minimum(reach.clamp(min=0), limit).ceil().tolist()]

        images = torch.nn.functional.pad(images, [left, right, top, bottom], mode="reflect")
        inv = translate2d(_full(n, (left - right) / 2, inv), _full(n, (top - bottom) / 2, inv)) @ inv
        images = upfirdn2d.upsample2d(images, filt, up=2)
        # Express the matrix on the 2x grid; the even-length filter pair delays by half a fine pixel.
        two, half = _full(n, 2.0, inv), _full(n, 0.5, inv)
        inv = scale2d(two, two) @ inv @ scale2d(1 / two, 1 / two)
        inv = translate2d(-half, -half) @ inv @ translate2d(half, half)

        out_h, out_w = (height + 2 * filter_margin) * 2, (width + 2 * filter_margin) * 2
        in_h, in_w = images.shape[2], images.shape[3]
        to_normalised = scale2d(_full(n, 2 / in_w, inv), _full(n, 2 / in_h, inv))
        from_normalised = scale2d(_full(n, out_w / 2, inv), _full(n, out_h / 2, inv))
        theta = (to_normalised @ inv @ from_normalised)[:, :2, :]
        grid = torch.nn.functional.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
        images = grid_sample_gradfix.grid_sample(images, grid)
        return upfirdn2d.downsample2d(images, filt, down=2, padding=-2 * filter_margin, flip_filter=True)

    # ------------------------------------------------------------------ colour

    def sample_color_matrix(self, n: int, device: torch.device) -> torch.Tensor:
        """Per-sample 4x4 matrices acting on homogeneous RGB; later steps multiply from the left."""
        eye = torch.eye(4, device=device)
        mat = eye.expand(n, 4, 4)
        ones, zeros = torch.ones([n], device=device), torch.zeros([n], device=device)
        luma = torch.tensor([1, 1, 1, 0], dtype=torch.float32, device=device) / math.sqrt(3)
        luma_proj = torch.outer(luma, luma)
        if self.brightness > 0:
            b = torch.where(self._gate(self.brightness, n, device), torch.randn([n], device=device) * self.brightness_std, zeros)
            mat = translate3d(b) @ mat
        if self.contrast > 0:
            c = torch.where(self._gate(self.contrast, n, device), torch.exp2(torch.randn([n], device=device) * self.contrast_std), ones)
            mat = scale3d(c) @ mat
        if self.lumaflip > 0:
            flip = torch.where(self._gate(self.lumaflip, n, device), torch.randint(0, 2, [n], device=device).float(), zeros)
            mat = (eye - 2 * luma_proj * flip[:, None, None]) @ mat  # Householder reflection of the luma axis
        if self.hue > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.hue_max
            theta = torch.where(self._gate(self.hue, n, device), theta, zeros)
            mat = rotate3d(luma[:3], theta) @ mat
        if self.saturation > 0:
            s = torch.where(self._gate(self.saturation, n, device), torch.exp2(torch.randn([n], device=device) * self.saturation_std), ones)
            mat = (luma_proj + (eye - luma_proj) * s[:, None, None]) @ mat
        return mat

    def _apply_color(self, images: torch.Tensor) -> torch.Tensor:
        n, c, height, width = images.shape
        mat = self.sample_color_matrix(n, images.device).to(images.dtype)
        if c == 1:  # grey images: average the RGB rows, then apply to the single channel
            mat = mat[:, :3, :].mean(dim=1, keepdim=True)
            flat = images.reshape(n, 1, height * width)
            return (flat * mat[:, :, :3].sum(dim=2, keepdim=True) + mat[:, :, 3:]).reshape(images.shape)
        flat = images.reshape(n, 3, height * width)
        return (mat[:, :3, :3] @ flat + mat[:, :3, 3:]).reshape(images.shape)

    # ------------------------------------------------------------------ image-space filter

    def sample_band_gains(self, n: int, device: torch.device) -> torch.Tensor:
        """Per-sample gains [n, 4] of the octave bands, each step renormalised to keep expected power."""
        expected_power = torch.tensor(BAND_EXPECTED_POWER, device=device)
        gains = torch.ones([n, 4], device=device)
        for band, band_strength in enumerate(self.imgfilter_bands):
            t_band = torch.exp2(torch.randn([n], device=device) * self.imgfilter_std)
            t_band = torch.where(self._gate(self.imgfilter * band_strength, n, device), t_band, torch.ones_like(t_band))
            step = torch.ones([n, 4], device=device)
            step[:, band] = t_band
            step = step / (expected_power * step.square()).sum(dim=1, keepdim=True).sqrt()
            gains = gains * step
        return gains

    def _apply_filter(self, images: torch.Tensor) -> torch.Tensor:
        n, c, height, width = images.shape
        taps = self.band_filter_bank.shape[1]
        pad = taps // 2
        if min(height, width) <= pad:
            raise ValueError(f"AugmentPipe: imgfilter needs images larger than {pad} px, got {height}x{width}")
        kernel = self.sample_band_gains(n, images.device) @ self.band_filter_bank  # [n, taps]
        kernel = kernel.to(images.dtype).repeat_interleave(c, dim=0)[:, None, :]  # [n*c, 1, taps]
        x = images.reshape(1, n * c, height, width)
        x = torch.nn.functional.pad(x, [pad, pad, pad, pad], mode="reflect")
        x = conv2d_gradfix.conv2d(x, kernel[:, :, None, :], groups=n * c)  # along x
        x = conv2d_gradfix.conv2d(x, kernel[:, :, :, None], groups=n * c)  # along y
        return x.reshape(images.shape)

    # ------------------------------------------------------------------ corruptions

    def _apply_noise(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        sigma = torch.randn([n], device=images.device).abs() * self.noise_std
        sigma = torch.where(self._gate(self.noise, n, images.device), sigma, torch.zeros_like(sigma))
        return images + torch.randn_like(images) * sigma[:, None, None, None].to(images.dtype)

    def _apply_cutout(self, images: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        device = images.device
        size = torch.where(self._gate(self.cutout, n, device), torch.full([n], self.cutout_size, device=device),
                           torch.zeros([n], device=device))
        centre = torch.rand([n, 2], device=device)
        xs = (torch.arange(width, device=device) + 0.5) / width
        ys = (torch.arange(height, device=device) + 0.5) / height
        inside_x = (xs[None, :] - centre[:, 0:1]).abs() < size[:, None] / 2  # [n, W]
        inside_y = (ys[None, :] - centre[:, 1:2]).abs() < size[:, None] / 2  # [n, H]
        keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
        return images * keep[:, None, :, :].to(images.dtype)


# ----------------------------------------------------------------------------
# Exact execution of matrices that map the pixel grid onto itself.

def _is_pixel_blit(inv: torch.Tensor, width: int, height: int, tol: float = 1e-4) -> torch.Tensor:
    """[N] bool: linear part is a signed permutation and pixel centres land on pixel centres."""
    lin = inv[:, :2, :2]
    integral = ((lin - lin.round()).abs() < tol).all(dim=(1, 2)) & (lin.round().abs().sum(dim=(1, 2)) == 2)
    integral &= (lin.round().abs().sum(dim=1) == 1).all(dim=1)
    corner = torch.tensor([-(width - 1) / 2, -(height - 1) / 2, 1.0], dtype=inv.dtype, device=inv.device)
    src = inv @ corner  # source of the top-left output pixel centre
    idx = src[:, :2] + torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=inv.dtype, device=inv.device)
    return integral & ((idx - idx.round()).abs() < tol).all(dim=1)


def _reflect_index(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror indices into [0, size) without repeating the edge pixel (like 'reflect' padding)."""
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= size, period - idx, idx)


def _warp_blit(images: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    n, c, height, width = images.shape
    dev = images.device
    xs = torch.arange(width, device=dev, dtype=inv.dtype) - (width - 1) / 2
    ys = torch.arange(height, device=dev, dtype=inv.dtype) - (height - 1) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([gx.flatten(), gy.flatten(), torch.ones_like(gx.flatten())])  # [3, H*W]
    src = inv @ coords  # [n, 3, H*W]
    src_x = _reflect_index((src[:, 0] + (width - 1) / 2).round().long(), width)
    src_y = _reflect_index((src[:, 1] + (height - 1) / 2).round().long(), height)
    flat_idx = (src_y * width + src_x)[:, None, :].expand(n, c, height * width)
    return images.reshape(n, c, height * width).gather(2, flat_idx).reshape(images.shape)
