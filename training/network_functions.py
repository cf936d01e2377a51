"""The stateless half of the networks: argument checks, dtype and layout choices, gains, modulated convolution.

training/networks.py imports every name here and holds the modules. Upstream-format exports embed one
self-contained module: training/upstream_export.py puts this file's body where networks.py imports it, so the
portability rule of networks.py (only upstream's torch_utils API, numpy, torch and the standard library) holds
here too, and this module must not import from training/.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from torch_utils import misc
from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d


# ----------------------------------------------------------------------------
# Small helpers.

def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale x so that the mean of its squares along `dim` is 1."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def activation_gain(activation: str) -> float:
    if activation not in bias_act.activation_funcs:
        choices = ", ".join(bias_act.activation_funcs)
        raise ValueError(f"activation={activation!r} is unknown; choose one of {choices}")
    return bias_act.activation_funcs[activation].def_gain


def folds_gain(activation: str) -> bool:
    """act(g x) = g act(x) for g > 0: the output gain can scale the weights and bias instead of the output
    (one pass over the activations less, forward and backward; equal up to float rounding)."""
    return activation in ("linear", "relu", "lrelu")


def block_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    """FP16 only where asked for and on CUDA; elsewhere float32 keeps CPU paths exact and supported."""
    return torch.float16 if (use_fp16 and not force_fp32 and device.type == "cuda") else torch.float32


def memory_format_for(channels_last: bool, dtype: torch.dtype, all_layers: bool = False) -> torch.memory_format:
    """NHWC for FP16 blocks with --nhwc, or for every block with --channels-last (training/speed.py)."""
    return torch.channels_last if (all_layers or (channels_last and dtype == torch.float16)) else torch.contiguous_format


def filter_buffer(taps: list) -> torch.Tensor:
    """The [4,4] FIR buffer, built on CPU then moved to the default device (works under torch.device('meta'))."""
    with torch.device("cpu"):
        f = upfirdn2d.setup_filter(taps)
    return f.to(torch.empty(0).device)


def check_resolution(img_resolution: int, owner: str, minimum: int = 4) -> int:
    """Validate a power-of-two resolution and return its log2."""
    if not isinstance(img_resolution, int) or img_resolution < minimum or img_resolution & (img_resolution - 1):
        raise ValueError(f"{owner}: img_resolution={img_resolution!r} must be a power of two >= {minimum}")
    return int(np.log2(img_resolution))


def check_choice(value: str, choices: tuple[str, ...], option: str) -> None:
    if value not in choices:
        raise ValueError(f"{option}={value!r} is unknown; choose one of {', '.join(choices)}")


def channels_per_resolution(resolutions: list[int], channel_base: int, channel_max: int) -> dict[int, int]:
    return {res: min(channel_base // res, channel_max) for res in resolutions}


def fp16_min_resolution(img_resolution_log2: int, num_fp16_res: int) -> int:
    """Lowest resolution that runs in FP16 (never below 8: the 4x4 layers stay FP32)."""
    return max(2 ** (img_resolution_log2 + 1 - num_fp16_res), 8)


# ----------------------------------------------------------------------------
# Modulated convolution.

def modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None,
    up: int = 1, down: int = 1, padding: int = 0, resample_filter: torch.Tensor | None = None,
    demodulate: bool = True, flip_weight: bool = True, fused_modconv: bool = True, out_gain: float = 1,
) -> torch.Tensor:
    """Convolve each sample with the shared weight scaled per input channel by its styles.

    `out_gain` scales the result (noise included) through the small per-sample factors, not a pass over x.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(weight, [out_channels, in_channels, kh, kw])
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    if x.dtype == torch.float16 and demodulate:
        # Keep FP16 intermediates finite; demodulation cancels these scales exactly.
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    demod = None
    if demodulate:
        # sum over i, k of (w[o,i,k] s[i])^2 = sum_i s[i]^2 sum_k w[o,i,k]^2: an [N,I] x [I,O] product, no
        # [N,O,I,kh,kw] per-sample weights (which the unfused form never convolves with).
        demod = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
    if out_gain != 1:  # scale the small per-sample factors instead of x
        if demod is not None:
            demod = demod * out_gain
        else:
            styles = styles * out_gain
        noise = noise * out_gain if noise is not None else None

    if not fused_modconv:
        return _modconv_unfused(x, weight, styles, demod, noise, up, down, padding, resample_filter, flip_weight)

    per_sample_weight = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [N, O, I, kh, kw]
    if demod is not None:
        per_sample_weight = per_sample_weight * demod.reshape(batch_size, -1, 1, 1, 1)
    # Fold the batch into channels so one grouped convolution handles every sample's own weight.
    x = x.reshape(1, -1, *x.shape[2:])
    grouped_weight = per_sample_weight.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample.conv2d_resample(x, grouped_weight.to(x.dtype), f=resample_filter, up=up, down=down,
                                        padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def _modconv_unfused(x, weight, styles, demod, noise, up, down, padding, resample_filter, flip_weight):
    """Scale activations instead of weights: cheaper in FP16 and in training mode."""
    batch_size = x.shape[0]
    x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
    x = conv2d_resample.conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down,
                                        padding=padding, flip_weight=flip_weight)
    if demod is not None and noise is not None:
        return fma.fma(x, demod.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
    if demod is not None:
        return x * demod.to(x.dtype).reshape(batch_size, -1, 1, 1)
    if noise is not None:
        return x + noise.to(x.dtype)
    return x
