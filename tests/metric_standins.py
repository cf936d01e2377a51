"""Cheap stand-ins for the metric tests: a small generator and a colour detector that replaces Inception/VGG."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metrics import runners
from metrics.features import Detector
from training.networks import Generator


def small_generator(res: int = 64, c_dim: int = 0) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=res, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))


class ColourDetector:
    """Cheap stand-in detector: 4x4 average colours (48 features); counts the images it sees."""

    def __init__(self):
        self.images_seen = 0

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        assert img.dtype == torch.uint8 and img.shape[1] == 3
        self.images_seen += img.shape[0]
        return F.adaptive_avg_pool2d(img.float(), 4).flatten(1)


@pytest.fixture
def colour_detector(monkeypatch):
    """The colour detector in place of Inception features and the VGG16 embedding."""
    detector = ColourDetector()
    monkeypatch.setattr(runners, "inception_features", lambda opts: Detector("toy-colour", detector))
    monkeypatch.setattr(runners, "vgg16_embedding", lambda opts: Detector("toy-colour-vgg", detector))
    return detector
