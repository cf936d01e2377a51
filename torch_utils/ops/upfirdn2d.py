"""Upsample, pad, FIR-filter and downsample a batch of 2-D images, channel by channel.

For each channel of an NCHW tensor:
  1. insert up-1 zeros after every sample (x and y separately),
  2. pad with zeros by [x0, x1, y0, y1] (negative values crop),
  3. convolve with the FIR filter f (true convolution; correlation when flip_filter=True),
     f being 2-D [fh, fw] or 1-D separable [taps] (applied along x, then y), scaled so the
     total gain is `gain`,
  4. keep every down-th sample, starting at index 0.
Output size per axis: (in * up + pad0 + pad1 - taps) // down + 1.

The reference path has gradients of any order for free: a separable filter (1-D, or a 2-D
outer product such as setup_filter([1, 3, 3, 1])) runs as two matrix products that also do the
zero insertion, padding and decimation (fir_matrix.py; far cheaper on the CPU than a depthwise
convolution); any other 2-D filter uses zero insertion + F.pad + depthwise F.conv2d. The CUDA path is one fused kernel whose backward is again an upfirdn2d
(up/down swapped, filter flipped, padding adjusted), so it too is differentiable to any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Sequence

import torch
import torch.nn.functional as F

from torch_utils.ops import fir_matrix, plugin_dispatch, plugin_selfcheck

IntPair = int | Sequence[int]


def setup_filter(f, device: torch.device = torch.device("cpu"), normalize: bool = True,
                 flip_filter: bool = False, gain: float = 1, separable: bool | None = None) -> torch.Tensor:
    """Turn filter taps into a float32 tensor ready for upfirdn2d.

    None -> [1]; a scalar -> one tap. A 1-D filter stays separable when `separable` says so
    (default: only for >= 8 taps), else becomes its outer product. normalize: sum to 1.
    The result is scaled by gain ** (ndim / 2) so that the whole 2-D filter has gain `gain`.
    """
    f = torch.as_tensor(1 if f is None else f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"setup_filter: expected a scalar, 1-D or 2-D non-empty filter, got shape {tuple(f.shape)}")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("setup_filter: separable=True needs a 1-D filter")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: IntPair = 1, down: IntPair = 1, padding: IntPair = 0,
              flip_filter: bool = False, gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Upsample by `up`, pad by `padding`, filter with `f`, downsample by `down` (see module doc)."""
    f = _check_filter(f, x)
    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    pad = _parse_padding(padding)
    _check_input(x, f, (upx, upy), pad)
    plugin = plugin_dispatch.select_plugin(x, impl, "upfirdn2d", _load_plugin, self_check)
    if plugin is None:
        return _upfirdn2d_ref(x, f, (upx, upy), (downx, downy), pad, flip_filter, gain)
    params = _CudaParams(plugin, (upx, upy), (downx, downy), pad, bool(flip_filter), float(gain))
    return _UpFirDn2dCuda.apply(x, f.float(), params)  # the kernel reads float32 taps


def filter2d(x: torch.Tensor, f: torch.Tensor | None, padding: IntPair = 0, flip_filter: bool = False,
             gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Filter without resampling; the output has the input's size (plus `padding`)."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up: IntPair = 2, padding: IntPair = 0,
               flip_filter: bool = False, gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Upsample by `up` with `f` as the interpolation filter; output exactly up x the input size."""
    upx, upy = _parse_scaling(up, "up")
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    pad = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    # The inserted zeros dilute the signal by upx * upy; the gain compensates.
    return upfirdn2d(x, f, up=(upx, upy), padding=pad, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down: IntPair = 2, padding: IntPair = 0,
                 flip_filter: bool = False, gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Anti-alias with `f`, then keep every down-th sample; output exactly 1/down of the input size."""
    downx, downy = _parse_scaling(down, "down")
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    pad = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


# ----------------------------------------------------------------------------
# Argument parsing.

def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a filter as accepted by upfirdn2d; None counts as 1x1."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return int(f.shape[0]), int(f.shape[0])
    if f.ndim == 2:
        return int(f.shape[1]), int(f.shape[0])
    raise ValueError(f"upfirdn2d: the filter must be 1-D or 2-D, got shape {tuple(f.shape)}; use setup_filter()")


def _parse_scaling(scaling: IntPair, name: str) -> tuple[int, int]:
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    sx, sy = (int(s) for s in scaling)
    if sx < 1 or sy < 1:
        raise ValueError(f"upfirdn2d: {name} must be >= 1, got {scaling}")
    return sx, sy


def _parse_padding(padding: IntPair) -> list[int]:
    if isinstance(padding, int):
        padding = [padding, padding]
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return [px, px, py, py]
    if len(padding) == 4:
        return padding
    raise ValueError(f"upfirdn2d: padding must be an int, [px, py] or [x0, x1, y0, y1], got {padding}")


def _check_filter(f: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    if f is None:
        return torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2) or not f.is_floating_point():
        raise ValueError("upfirdn2d: f must be a 1-D or 2-D floating-point tensor; build it with setup_filter()")
    if f.device != x.device:
        raise ValueError(f"upfirdn2d: the filter is on {f.device} but x is on {x.device}")
    return f


def _check_input(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int], pad: list[int]) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be a 4-D NCHW tensor, got {getattr(x, 'shape', type(x))}")
    fw, fh = filter_size(f)
    width = x.shape[3] * up[0] + pad[0] + pad[1]
    height = x.shape[2] * up[1] + pad[2] + pad[3]
    if width < fw or height < fh:
        raise ValueError(f"upfirdn2d: the padded image ({height}x{width}) is smaller than the filter ({fh}x{fw}); "
                         f"reduce the cropping (negative padding) or use a smaller filter")


# ----------------------------------------------------------------------------
# Reference path.

def _upfirdn2d_ref(x, f, up, down, pad, flip_filter, gain) -> torch.Tensor:
    if x.device.type == "cpu" and not f.requires_grad and fir_matrix.pays_off(x.shape[2], x.shape[3], up, down):
        axes = fir_matrix.separable_axes(f, flip_filter, gain)  # (on a GPU the depthwise conv is fast)
        if axes is not None:  # two small matmuls instead of a depthwise conv (see fir_matrix)
            return fir_matrix.apply(x, axes, up, down, pad)
    x = _insert_zeros(x, *up)
    x = _pad_or_crop(x, pad)
    x = _depthwise_fir(x, f, flip_filter, gain)
    return x[:, :, ::down[1], ::down[0]]


def _insert_zeros(x: torch.Tensor, upx: int, upy: int) -> torch.Tensor:
    if upx == 1 and upy == 1:
        return x
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    return x.reshape(n, c, h * upy, w * upx)


def _pad_or_crop(x: torch.Tensor, pad: list[int]) -> torch.Tensor:
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    h, w = x.shape[2], x.shape[3]
    return x[:, :, max(-y0, 0): h - max(-y1, 0), max(-x0, 0): w - max(-x1, 0)]


def _depthwise_fir(x: torch.Tensor, f: torch.Tensor, flip_filter: bool, gain: float) -> torch.Tensor:
    channels = x.shape[1]
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:  # F.conv2d correlates; a true convolution needs the flipped filter
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        return F.conv2d(x, f[None, None].repeat(channels, 1, 1, 1), groups=channels)
    x = F.conv2d(x, f[None, None, None, :].repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(x, f[None, None, :, None].repeat(channels, 1, 1, 1), groups=channels)


# ----------------------------------------------------------------------------
# CUDA path.

def _load_plugin() -> ModuleType:
    from torch_utils import custom_ops  # local: keeps import cheap where the plugin is never wanted
    return custom_ops.get_plugin_for_op("upfirdn2d")


# (name, up, down, padding, separable): upsample2d / downsample2d / filter2d with the networks'
# [1, 3, 3, 1] filter, plus the separable two-pass path and an asymmetric crop.
_CHECK_CASES = (("upsample2d", 2, 1, (2, 1, 2, 1), False), ("downsample2d", 1, 2, (1, 1, 1, 1), False),
                ("filter2d", 1, 1, (2, 1, 2, 1), False), ("separable up=2", 2, 1, (2, 1, 2, 1), True),
                ("crop up=(2,1) down=(1,2)", (2, 1), (1, 2), (-1, 2, 1, -1), False))


def self_check(plugin: ModuleType, device: torch.device) -> plugin_selfcheck.CheckResult:
    """The plugin vs the reference path on the resampling the networks do (see plugin_selfcheck)."""
    cases = [_check_case(plugin, device, *case) for case in _CHECK_CASES]
    return plugin_selfcheck.run_self_check("upfirdn2d", cases, device)


def _check_case(plugin: ModuleType, device: torch.device, name: str, up: IntPair, down: IntPair,
                pad: tuple[int, int, int, int], separable: bool) -> plugin_selfcheck.CheckCase:
    f = setup_filter([1, 3, 3, 1], device=device, separable=separable)
    up, down = _parse_scaling(up, "up"), _parse_scaling(down, "down")
    gain = float(up[0] * up[1])
    params = _CudaParams(plugin, up, down, pad, False, gain)
    return plugin_selfcheck.CheckCase(
        name=name, shapes=[[2, 3, 6, 7]], fused=lambda x: _UpFirDn2dCuda.apply(x, f, params),
        reference=lambda x: _upfirdn2d_ref(x, f, up, down, list(pad), False, gain))


@dataclass(frozen=True)
class _CudaParams:
    plugin: ModuleType
    up: tuple[int, int]
    down: tuple[int, int]
    pad: tuple[int, int, int, int] | list[int]
    flip_filter: bool
    gain: float

    def run(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """One fused pass; separable filters run as a horizontal then a vertical pass."""
        upx, upy = self.up
        downx, downy = self.down
        x0, x1, y0, y1 = self.pad
        if f.ndim == 2:
            return self.plugin.upfirdn2d(x, f, upx, upy, downx, downy, x0, x1, y0, y1, self.flip_filter, self.gain)
        root_gain = self.gain ** 0.5
        x = self.plugin.upfirdn2d(x, f[None, :], upx, 1, downx, 1, x0, x1, 0, 0, self.flip_filter, root_gain)
        return self.plugin.upfirdn2d(x, f[:, None], 1, upy, 1, downy, 0, 0, y0, y1, self.flip_filter, root_gain)

    def adjoint(self, in_shape: Sequence[int], f: torch.Tensor) -> "_CudaParams":
        """Parameters of the upfirdn2d that maps output gradients back to input gradients."""
        fw, fh = filter_size(f)
        upx, upy = self.up
        downx, downy = self.down
        x0, x1, y0, y1 = self.pad
        in_h, in_w = in_shape[2], in_shape[3]
        out_w = (in_w * upx + x0 + x1 - fw) // downx + 1
        out_h = (in_h * upy + y0 + y1 - fh) // downy + 1
        pad = (fw - x0 - 1, in_w * upx - out_w * downx + x0 - upx + 1,
               fh - y0 - 1, in_h * upy - out_h * downy + y0 - upy + 1)
        return _CudaParams(self.plugin, self.down, self.up, pad, not self.flip_filter, self.gain)


class _UpFirDn2dCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f, params):
        ctx.params = params
        ctx.in_shape = x.shape
        ctx.save_for_backward(f)
        return params.run(x, f)

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _UpFirDn2dCuda.apply(dy, f, ctx.params.adjoint(ctx.in_shape, f))
        return dx, None, None
