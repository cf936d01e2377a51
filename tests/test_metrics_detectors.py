"""Detectors: our Inception vs fid-helper's TorchScript module, LPIPS behaviour, safe weight reading."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from metrics import detectors, offline_weights, tensor_unpickler
from metrics.inception import resize_tf_bilinear
from metrics.vgg16 import TAP_CHANNELS, conv_shapes


def _real_images(folder, n=3) -> torch.Tensor:
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))[:n]
    arr = np.stack([np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")) for f in files])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _tf_resize_reference(x: torch.Tensor, size: int) -> torch.Tensor:
    # Independent route to TF1 legacy bilinear: affine grid shifted so output i samples input i * in / out.
    n, c, h, w = x.shape
    theta = torch.eye(2, 3).unsqueeze(0).repeat(n, 1, 1)
    theta[:, 0, 2] += 1 / w - 1 / size
    theta[:, 1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _fid_helper_file() -> str:
    path = offline_weights.find("inception")
    if path is None:
        pytest.skip("no offline Inception weights (python scripts/fetch_weights.py)")
    return path


def test_tf_legacy_resize_matches_grid_reference(embedded_dataset_dir):
    img = _real_images(embedded_dataset_dir, 2).float()
    ours = resize_tf_bilinear(img, 299)
    assert ours.shape == (2, 3, 299, 299)
    torch.testing.assert_close(ours, _tf_resize_reference(img, 299), atol=2e-3, rtol=0)


# The reference is the pip package's TorchScript file; torch 2.13 deprecates torch.jit.load but still loads it,
# and the test stays a cross-check against that file for as long as torch can read it.
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_inception_features_match_torchscript_module(embedded_dataset_dir):
    path = _fid_helper_file()
    img = _real_images(embedded_dataset_dir, 3)
    ours = detectors.get_inception(source=path)(img, return_features=True)
    reference_net = torch.jit.load(path).eval()  # the pip-installed package's own module, as the reference
    with torch.no_grad():
        reference = reference_net((resize_tf_bilinear(img.float(), 299) - 128) / 128)
    assert ours.shape == (3, 2048)
    assert (ours - reference).abs().max().item() < 1e-4
    assert ours.abs().max().item() > 0.5  # real activations, not a degenerate all-zero net


def test_inception_without_classifier_explains_how_to_get_is(embedded_dataset_dir):
    net = detectors.get_inception(source=_fid_helper_file())
    with pytest.raises(RuntimeError, match="inception-2015-12-05.pkl"):
        net(_real_images(embedded_dataset_dir, 1), return_features=False)


def test_lpips_zero_for_identical_and_grows_with_noise(embedded_dataset_dir):
    if offline_weights.find("vgg16") is None:
        pytest.skip("no offline VGG16 weights (python scripts/fetch_weights.py)")
    vgg = detectors.get_vgg16()
    img = _real_images(embedded_dataset_dir, 2).float()
    noise = torch.randn(img.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = vgg.lpips(img, img)
        dists = [vgg.lpips(img, (img + noise * s).clamp(0, 255)) for s in (4, 16, 64)]
    assert torch.all(same.abs() < 1e-7)
    assert torch.all(dists[0] > 1e-3) and torch.all(dists[0] < dists[1]) and torch.all(dists[1] < dists[2])
    assert vgg.embed(img.to(torch.uint8)).shape == (2, 512)


def test_vgg16_from_torch_file_by_shape_order_uses_fc_layers(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for i, (cin, cout) in enumerate(conv_shapes()):
        tensors[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * 0.05
        tensors[f"features.{i}.bias"] = torch.zeros(cout)
    for i, ch in enumerate(TAP_CHANNELS):
        tensors[f"lin{i}.weight"] = torch.rand(1, ch, 1, 1, generator=gen)
    # Stride-0 expansions keep the 25088x4096 layer cheap on disk: torch.save stores one element.
    tensors.update({"fc6.weight": torch.full((1, 1), 1e-3).expand(4096, 25088), "fc6.bias": torch.zeros(4096),
                    "fc7.weight": torch.full((1, 1), -1e-3).expand(4096, 4096), "fc7.bias": torch.ones(4096)})
    path = str(tmp_path / "vgg16.pt")
    torch.save(tensors, path)
    vgg = detectors.load_vgg16(path)
    torch.testing.assert_close(vgg.features.convs[12].weight, tensors["features.12.weight"])
    torch.testing.assert_close(vgg.lin[4], tensors["lin4.weight"].flatten())
    assert vgg.has_fc
    torch.testing.assert_close(vgg.fc7_weight[:2, :2], torch.full((2, 2), -1e-3))
    img = torch.rand(1, 3, 32, 32, generator=gen) * 255
    pool5 = F.max_pool2d(vgg.features(vgg.features.normalize_input(
        F.interpolate(img, size=(224, 224), mode="bilinear", align_corners=False)))[-1], 2).flatten(1)
    expected = F.relu(F.relu(pool5.sum(1, keepdim=True) * 1e-3) * -1e-3 * 4096 + 1).expand(1, 4096)
    torch.testing.assert_close(vgg.embed(img), expected, rtol=1e-4, atol=1e-5)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch should_not_exist",))


def test_tensor_unpickler_never_calls_pickled_functions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "evil.pkl")
    with open(path, "wb") as f:
        pickle.dump({"payload": _Exploit(), "w": torch.ones(2, 3)}, f)
    named = dict(tensor_unpickler.iter_named_tensors(tensor_unpickler.read_tensor_tree(path)))
    assert not (tmp_path / "should_not_exist").exists()
    torch.testing.assert_close(named["w"], torch.ones(2, 3))
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        tensor_unpickler.load_numpy_pickle(path)


def test_missing_weights_error_says_how_to_install(monkeypatch):
    monkeypatch.delenv(detectors.INCEPTION_ENV, raising=False)
    monkeypatch.delenv(detectors.VGG16_ENV, raising=False)
    monkeypatch.setattr(offline_weights, "find", lambda kind: None)
    with pytest.raises(FileNotFoundError, match="python scripts/fetch_weights.py --only=inception"):
        detectors.inception_source()
    with pytest.raises(FileNotFoundError, match="python scripts/fetch_weights.py --only=vgg16"):
        detectors.vgg16_source()
    assert not detectors.have_offline_weights("inception") and not detectors.have_offline_weights("vgg16")


def test_wrong_weight_file_is_rejected_with_its_name(tmp_path):
    path = str(tmp_path / "not_inception.pt")
    torch.save({"layers.conv.weight": torch.zeros(32, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="not_inception.pt: not Inception-v3"):
        detectors.load_inception(path)
