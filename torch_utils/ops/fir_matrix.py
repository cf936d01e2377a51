"""upfirdn2d of a separable filter as two matrix products: y = A_y @ x @ A_x^T per channel.

Along one axis, "insert up-1 zeros, pad by (p0, p1), correlate with taps g, keep every down-th
sample" is a linear map from L input to L_out output samples; its matrix has
A[o, i] = g[i * up + p0 - o * down] where that index is a valid tap, else 0. Applying the two axis
matrices with matmul does the whole resampling in two BLAS calls whose backward (of any order) is
again matmul. On the CPU this is several times faster than the depthwise convolution it replaces
(oneDNN's depthwise kernels are slow for 4x4 taps on small images), and down-sampling computes only
the kept samples. The sums run in a different order than the convolution's, so results differ by
float rounding (~1e-7 relative).

The axis matrices depend only on the taps and the sizes, so they are cached by value; a filter
tensor's factorisation is cached per tensor.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import NamedTuple

import torch

_CACHE: OrderedDict = OrderedDict()
_AXES_CACHE: dict = {}
_CACHE_SIZE = 512
_REDUCED = (torch.float16, torch.bfloat16)


class SeparableAxes(NamedTuple):
    """Correlation taps per axis (flip and gain already applied)."""
    taps_x: tuple[float, ...]
    taps_y: tuple[float, ...]


def pays_off(height: int, width: int, up: tuple[int, int], down: tuple[int, int]) -> bool:
    """Whether the dense matrices beat the depthwise convolution at this size.

    A dense axis matrix spends O(L) multiply-adds per output sample instead of the filter's taps, so it
    loses on large images. Measured on the CPU (1 thread, 4x32 channels, [1,3,3,1]; docs/performance.md):
    plain filtering is faster up to 64 px (0.91 vs 1.05 ms) and slower at 128 px (5.7 vs 3.5 ms);
    with up/down-sampling it is faster still at 256 px input (up 320 vs 486 ms, down 35 vs 98 ms).
    """
    limit = 64 if up == (1, 1) and down == (1, 1) else 256
    return max(height, width) <= limit


def separable_axes(f: torch.Tensor, flip_filter: bool, gain: float) -> SeparableAxes | None:
    """The filter as x and y correlation taps, or None when a 2-D filter is not an outer product.

    Cached per filter tensor (the networks pass the same buffer every call): the entry is valid while
    that very tensor is alive and unmodified (weak reference + version counter).
    """
    if _tracing():
        return None
    key = (id(f), f._version, bool(flip_filter), float(gain))
    hit = _AXES_CACHE.get(key)
    if hit is not None and hit[0]() is f:
        return hit[1]
    axes = _factorize(f, flip_filter, gain)
    _AXES_CACHE[key] = (weakref.ref(f), axes)
    if len(_AXES_CACHE) > _CACHE_SIZE:
        _AXES_CACHE.pop(next(iter(_AXES_CACHE)))
    return axes


def _factorize(f: torch.Tensor, flip_filter: bool, gain: float) -> SeparableAxes | None:
    f64 = f.detach().to("cpu", torch.float64)
    if f64.ndim == 1:  # separable filter: applied along x then y, each with gain ** 0.5
        fx = fy = f64 * (gain ** 0.5)
    else:
        total = f64.sum()
        if total == 0:
            return None
        fy, fx = f64.sum(1), f64.sum(0) / total * gain
        if not torch.allclose(torch.outer(fy, fx), f64 * gain, rtol=1e-6, atol=1e-9 * f64.abs().max().item()):
            return None
    if not flip_filter:  # upfirdn2d convolves; correlation taps are the flipped filter
        fx, fy = fx.flip(0), fy.flip(0)
    return SeparableAxes(tuple(fx.tolist()), tuple(fy.tolist()))


def apply(x: torch.Tensor, axes: SeparableAxes, up: tuple[int, int], down: tuple[int, int],
          pad: list[int]) -> torch.Tensor:
    """upfirdn2d of NCHW x along both axes (pad = [x0, x1, y0, y1])."""
    out_dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    if out_dtype in _REDUCED or x.dtype in _REDUCED:
        # Reduced precision: both passes in float32 and one rounding at the end, as the single depthwise
        # convolution rounds once (a rounded intermediate would double the error; autocast would round it).
        with torch.autocast(x.device.type, enabled=False):
            return _apply(x.float(), axes, up, down, pad).to(out_dtype)
    return _apply(x, axes, up, down, pad)


def _apply(x, axes, up, down, pad) -> torch.Tensor:
    n, c, h, w = x.shape
    a_x = axis_matrix(axes.taps_x, w, up[0], down[0], pad[0], pad[1], x.dtype, x.device)
    a_y = axis_matrix(axes.taps_y, h, up[1], down[1], pad[2], pad[3], x.dtype, x.device)
    y = torch.matmul(x.reshape(n * c * h, w), a_x.t())                           # [n*c*h, w_out]
    y = torch.matmul(a_y, y.reshape(n * c, h, a_x.shape[0]))                     # [n*c, h_out, w_out]
    return y.reshape(n, c, a_y.shape[0], a_x.shape[0])


def axis_matrix(taps: tuple[float, ...], length: int, up: int, down: int, pad0: int, pad1: int,
                dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[L_out, L] matrix of one axis (cached; never requires grad)."""
    key = (taps, length, up, down, pad0, pad1, dtype, device)
    matrix = _CACHE.get(key)
    if matrix is None:
        with torch.inference_mode(False), torch.no_grad():  # usable later by autograd as well
            matrix = _build(taps, length, up, down, pad0, pad1).to(device=device, dtype=dtype)
        _CACHE[key] = matrix
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return matrix


def _build(taps, length, up, down, pad0, pad1) -> torch.Tensor:
    out_len = (length * up + pad0 + pad1 - len(taps)) // down + 1
    g = torch.tensor(taps, dtype=torch.float64)
    k = torch.arange(length)[None, :] * up + pad0 - torch.arange(out_len)[:, None] * down
    valid = (k >= 0) & (k < len(taps))
    return torch.where(valid, g[k.clamp(0, len(taps) - 1)], torch.zeros(()))


def _tracing() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling()) or torch.jit.is_tracing()
