"""DiffAugment add-on: each transform against hand-computed values, the policy, and a short CPU training."""

import pytest
import torch

from train_helpers import emoji_zip, labelled_zip  # noqa: F401 (fixtures)
from training.methods.diffaugment import (DiffAugmentOptions, brightness, contrast, cutout, diff_augment, saturation,
                                          translate)

X = torch.arange(16.0).view(1, 1, 4, 4)


def test_color_transforms_match_hand_computation():
    pixel = torch.tensor([0.5, -0.5, 0.0]).view(1, 3, 1, 1)  # channel mean 0
    torch.testing.assert_close(brightness(pixel, torch.tensor(0.25)), torch.tensor([0.75, -0.25, 0.25]).view(1, 3, 1, 1))
    # saturation 2: (x - 0) * 2 + 0
    torch.testing.assert_close(saturation(pixel, torch.tensor(2.0)), torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1))
    # contrast 0.5 about the image mean 7.5: 0 -> 3.75, 15 -> 11.25
    out = contrast(X, torch.tensor(0.5))
    assert float(out[0, 0, 0, 0]) == 3.75 and float(out[0, 0, 3, 3]) == 11.25


def test_translation_shifts_with_zero_fill():
    out = translate(X, torch.tensor([1]), torch.tensor([-1]))  # out[h, w] = x[h + 1, w - 1]
    expected = torch.tensor([[0, 4, 5, 6], [0, 8, 9, 10], [0, 12, 13, 14], [0, 0, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(out[0, 0], expected)


def test_cutout_is_clipped_at_the_border():
    out = cutout(X + 1, torch.tensor([0]), torch.tensor([4]), 2, 2)  # rows -1..0, cols 3..4 -> only (0, 3)
    assert (out == 0).sum() == 1 and out[0, 0, 0, 3] == 0
    out = cutout(X + 1, torch.tensor([2]), torch.tensor([2]), 2, 2)  # rows 1..2, cols 1..2
    assert (out[0, 0, 1:3, 1:3] == 0).all() and (out == 0).sum() == 4


def test_policy_draws_per_sample_and_keeps_gradients():
    torch.manual_seed(0)
    x = torch.zeros(64, 3, 16, 16, requires_grad=True)
    out = diff_augment(torch.ones(64, 3, 16, 16), "cutout")
    masked = (out == 0).float().mean([1, 2, 3])
    # k = 8 of 16: the masked share lies in [1/16, 1/4] and varies between samples
    assert masked.min() >= 1 / 16 and masked.max() <= 1 / 4 and len(set(masked.tolist())) > 2
    diff_augment(x, "translation,cutout").sum().backward()
    assert (x.grad == 0).any() and (x.grad == 1).any()  # cutout and the zero fill stop the gradient, elsewhere it is 1
    x.grad = None
    diff_augment(x, "color,translation,cutout").sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad != 0).any()
    with pytest.raises(ValueError, match="--diffaugment_policy='colour'"):
        DiffAugmentOptions("colour")
    assert DiffAugmentOptions(" color , cutout").diffaugment_policy == "color,cutout"


def test_diffaugment_alone_runs_without_ada_and_trains(emoji_zip, labelled_zip):
    from golden_record import golden_options, torch_settings, train
    opts = golden_options("adalinear", emoji_zip, labelled_zip, extra=("--method=diffaugment",))  # no --ada-kimg
    assert opts.get("ada_target") is None and not opts.get("augment_kwargs")  # --aug defaults to noaug
    assert opts.method_kwargs["addons"] == {"diffaugment": {"diffaugment_policy": "color,translation,cutout"}}
    with torch_settings(threads=1):
        end, _ = train(opts)
        plain, _ = train(golden_options("noaug", emoji_zip, labelled_zip))
    assert all(torch.isfinite(t).all() for t in end.values())
    assert any(not torch.equal(end[n], plain[n]) for n in end if n.startswith("D."))
