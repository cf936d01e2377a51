"""Independent direct formulations that the ops are checked against (test helpers, not product code).

Written literally from the definitions (index arithmetic, explicit loops, dense matrices) and
sharing no code with torch_utils/ops, so a bug in an op cannot hide in its own reference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def upfirdn2d_direct(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip_filter=False, gain=1.0):
    """Zero insertion + zero canvas + F.conv2d with the flipped 2-D filter + strided slice."""
    n, c, h, w = x.shape
    (upx, upy), (downx, downy) = up, down
    x0, x1, y0, y1 = pad
    f2 = (torch.outer(f, f) if f.ndim == 1 else f).to(x.dtype) * gain
    kernel = f2 if flip_filter else torch.flip(f2, [0, 1])
    # Canvas big enough for the positive padding; negative padding is then sliced away.
    canvas = torch.zeros(n * c, 1, h * upy + max(y0, 0) + max(y1, 0), w * upx + max(x0, 0) + max(x1, 0),
                         dtype=x.dtype)
    canvas[:, :, max(y0, 0):max(y0, 0) + h * upy:upy, max(x0, 0):max(x0, 0) + w * upx:upx] = x.reshape(n * c, 1, h, w)
    canvas = canvas[:, :, max(-y0, 0):canvas.shape[2] - max(-y1, 0), max(-x0, 0):canvas.shape[3] - max(-x1, 0)]
    out = F.conv2d(canvas, kernel[None, None])[:, :, ::downy, ::downx]
    return out.reshape(n, c, out.shape[2], out.shape[3])


def upfirdn2d_loops(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip_filter=False, gain=1.0):
    """Every output sample as an explicit sum over filter taps (numpy, float64)."""
    xn = x.detach().double().numpy()
    fn = f.detach().double().numpy()
    f2 = (np.outer(fn, fn) if fn.ndim == 1 else fn) * gain
    fh, fw = f2.shape
    n, c, h, w = xn.shape
    (upx, upy), (downx, downy) = up, down
    x0, x1, y0, y1 = pad
    out_h = (h * upy + y0 + y1 - fh) // downy + 1
    out_w = (w * upx + x0 + x1 - fw) // downx + 1
    out = np.zeros((n, c, out_h, out_w))

    def sample(py, px):  # value of the upsampled+padded image at padded coordinate (py, px)
        uy, ux = py - y0, px - x0
        if 0 <= uy < h * upy and 0 <= ux < w * upx and uy % upy == 0 and ux % upx == 0:
            return xn[:, :, uy // upy, ux // upx]
        return 0.0

    for oy in range(out_h):
        for ox in range(out_w):
            acc = np.zeros((n, c))
            for i in range(fh):
                for j in range(fw):
                    tap = f2[i, j] if flip_filter else f2[fh - 1 - i, fw - 1 - j]
                    acc = acc + tap * sample(oy * downy + i, ox * downx + j)
            out[:, :, oy, ox] = acc
    return torch.from_numpy(out)


ACT_FORMULAS = {
    "linear": (lambda z, a: z, 0.0, 1.0),
    "relu": (lambda z, a: np.maximum(z, 0), 0.0, math.sqrt(2)),
    "lrelu": (lambda z, a: np.where(z >= 0, z, a * z), 0.2, math.sqrt(2)),
    "tanh": (lambda z, a: np.tanh(z), 0.0, 1.0),
    "sigmoid": (lambda z, a: 1 / (1 + np.exp(-z)), 0.0, 1.0),
    "elu": (lambda z, a: np.where(z > 0, z, np.expm1(z)), 0.0, 1.0),
    "selu": (lambda z, a: 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * np.expm1(z)), 0.0, 1.0),
    "softplus": (lambda z, a: np.log1p(np.exp(z)), 0.0, 1.0),
    "swish": (lambda z, a: z / (1 + np.exp(-z)), 0.0, math.sqrt(2)),
}


def bias_act_numpy(x, b, dim, act, alpha=None, gain=None, clamp=None):
    func, def_alpha, def_gain = ACT_FORMULAS[act]
    z = x.detach().double().numpy()
    if b is not None:
        shape = [1] * z.ndim
        shape[dim] = -1
        z = z + b.detach().double().numpy().reshape(shape)
    y = func(z, def_alpha if alpha is None else alpha) * (def_gain if gain is None else gain)
    if clamp is not None:
        y = np.clip(y, -clamp, clamp)
    return torch.from_numpy(y)


def conv2d_resample_direct(x, w, f, up, down, pad, groups, flip_weight):
    """Zero-insert, pad, convolve with w, FIR with f (gain up^2; again when also down), decimate.

    `pad` is the total padding after the up/down filter-size adjustments.
    """
    kernel = w if flip_weight else torch.flip(w, [2, 3])
    y = upfirdn2d_direct(x, torch.ones(1, 1, dtype=x.dtype), up=(up, up), pad=pad)
    y = F.conv2d(y, kernel, groups=groups)
    if up > 1:
        y = upfirdn2d_direct(y, f, gain=up ** 2)
    if down > 1:
        y = upfirdn2d_direct(y, f, down=(down, down))
    return y
