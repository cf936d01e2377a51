"""2-D convolution combined with FIR up/down-sampling, in the cheapest equivalent order.

Semantics: insert zeros (up), pad by `padding` (relative to the upsampled image, plus the
filter-size adjustments of upsample2d/downsample2d), convolve with `w`, FIR-filter with `f`
(gain up**2 when upsampling), FIR-filter again when also downsampling, keep every down-th sample.
All these steps are linear and shift-invariant, so they may be reordered; the implementation
picks the order that does the least work (e.g. a strided or transposed convolution).
"""

from __future__ import annotations

import torch

from torch_utils.ops import conv2d_gradfix
from torch_utils.ops.upfirdn2d import _parse_padding, filter_size, upfirdn2d


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    padding=0, groups: int = 1, flip_weight: bool = True, flip_filter: bool = False) -> torch.Tensor:
    """Convolve NCHW `x` with OIHW `w`, upsampling by `up` before and downsampling by `down` after.

    flip_weight=True is correlation (torch conv2d semantics); layers pass flip_weight=(up == 1).
    """
    _check_args(x, w, f, up, down, groups)
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        px0, px1, py0, py1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]

    if kw == 1 and kh == 1 and down > 1 and up == 1:  # shrink first: the 1x1 conv then sees fewer pixels
        x = upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:  # 1x1 conv before growing the image
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter)
    if down > 1 and up == 1:  # filter, then let the convolution's stride do the decimation
        x = upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        return _transposed_upsample(x, w, f, up, down, pad, groups, flip_weight, flip_filter)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:  # no resampling, plain padded conv
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, None, padding=pad)  # asymmetric or negative padding, no resampling
    return _conv(x, w, groups=groups, flip_weight=flip_weight)


def _transposed_upsample(x, w, f, up, down, pad, groups, flip_weight, flip_filter) -> torch.Tensor:
    """A stride-`up` transposed conv does the zero insertion and the convolution in one step."""
    out_channels, in_per_group, kh, kw = w.shape
    # conv_transpose2d wants [in, out/groups, kh, kw]: swap in/out within each group.
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    # The transposed conv already pads kw-1 on both sides and has no trailing up-1 zeros;
    # what remains of the requested padding is applied by the FIR filter step.
    px0, px1, py0, py1 = pad
    px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
    # Let the transposed conv do any cropping common to both sides (saves computing pixels).
    crop_x = max(min(-px0, -px1), 0)
    crop_y = max(min(-py0, -py1), 0)
    x = _conv(x, w, stride=up, padding=[crop_y, crop_x], groups=groups, transpose=True,
              flip_weight=not flip_weight)
    x = upfirdn2d(x, f, padding=[px0 + crop_x, px1 + crop_x, py0 + crop_y, py1 + crop_y], gain=up ** 2,
                  flip_filter=flip_filter)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True) -> torch.Tensor:
    if not flip_weight:  # torch convolutions correlate; a true convolution needs the flipped kernel
        w = w.flip([2, 3])
    if transpose:
        return conv2d_gradfix.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return conv2d_gradfix.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _check_args(x, w, f, up, down, groups) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"conv2d_resample: x must be a 4-D NCHW tensor, got {getattr(x, 'shape', type(x))}")
    if not isinstance(w, torch.Tensor) or w.ndim != 4 or w.dtype != x.dtype:
        raise ValueError(f"conv2d_resample: w must be a 4-D OIHW tensor of x's dtype ({x.dtype})")
    if f is not None and (f.ndim not in (1, 2) or not f.is_floating_point()):
        raise ValueError("conv2d_resample: f must be None or a 1-D/2-D filter from setup_filter()")
    if not (isinstance(up, int) and up >= 1 and isinstance(down, int) and down >= 1):
        raise ValueError(f"conv2d_resample: up and down must be integers >= 1, got up={up}, down={down}")
    if not isinstance(groups, int) or groups < 1 or w.shape[0] % groups or x.shape[1] != w.shape[1] * groups:
        raise ValueError(f"conv2d_resample: {x.shape[1]} input channels do not match weight {tuple(w.shape)} "
                         f"with groups={groups}")
