"""StyleGAN2 networks: upstream layout and parameter counts, shapes, gradients, mapping, noise, D."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training import networks

# Tiny configuration: channels min(256 // res, 32) -> 32 at 4..8, 16 at 16, 8 at 32, 4 at 64.
TINY = dict(channel_base=256, channel_max=32)


def tiny_G(res=32, c_dim=0, architecture="skip", **synthesis):
    torch.manual_seed(0)
    return networks.Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=res, img_channels=3,
                              mapping_kwargs=dict(num_layers=2),
                              synthesis_kwargs=dict(TINY, architecture=architecture, **synthesis))


def tiny_D(res=32, c_dim=0, architecture="resnet", **kwargs):
    torch.manual_seed(1)
    return networks.Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, architecture=architecture,
                                  mapping_kwargs=dict(num_layers=2), **TINY, **kwargs)


def count(module, buffers=False):
    tensors = module.buffers() if buffers else module.parameters()
    return sum(t.numel() for t in tensors)


# ----------------------------------------------------------------------------
# Upstream layout: parameter counts and state-dict names of the published networks.

def preset_networks(res, base, map_layers, c_dim, d_arch, mbstd):
    """The kwargs train.py derives for a cfg (3 channels, num_fp16_res 4, conv_clamp 256), built on meta."""
    with torch.device("meta"):
        G = networks.Generator(512, c_dim, 512, res, 3, mapping_kwargs=dict(num_layers=map_layers),
                               synthesis_kwargs=dict(channel_base=base, channel_max=512, num_fp16_res=4,
                                                     conv_clamp=256))
        D = networks.Discriminator(c_dim, res, 3, architecture=d_arch, channel_base=base, channel_max=512,
                                   num_fp16_res=4, conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=mbstd))
    return G, D


# (res, base, map, c_dim, D arch, mbstd) -> (mapping, synthesis, D, num_ws, G buffers, D buffers), as upstream builds them.
MEASURED = {
    "paper256": ((256, 16384, 8, 0, "resnet", 8), (2_101_248, 22_666_210, 24_001_089, 14, 175_568, 416)),
    "stylegan2": ((1024, 32768, 8, 0, "resnet", 4), (2_101_248, 28_268_812, 29_012_513, 18, 2_797_104, 544)),
    "paper1024": ((1024, 32768, 8, 0, "resnet", 4), (2_101_248, 28_268_812, 29_012_513, 18, 2_797_104, 544)),
    "cifar": ((32, 32768, 2, 10, "orig", 32), (793_088, 19_422_227, 23_089_664, 8, 3_392, 176)),
    "auto": ((64, 16384, 2, 0, "resnet", 4), (525_312, 21_718_296, 23_407_361, 10, 11_632, 288)),
}


@pytest.mark.parametrize("preset", sorted(MEASURED))
def test_parameter_counts_match_upstream_measurements(preset):
    cfg, (mapping, synthesis, d_params, num_ws, g_buffers, d_buffers) = MEASURED[preset]
    G, D = preset_networks(*cfg)
    assert count(G.mapping) == mapping
    assert count(G.synthesis) == synthesis
    assert count(G) == mapping + synthesis
    assert count(D) == d_params
    assert G.num_ws == num_ws
    assert count(G, buffers=True) == g_buffers
    assert count(D, buffers=True) == d_buffers


def analytic_counts(res, base, map_layers, c_dim, d_arch, cmax=512, z=512, w=512, rgb=3):
    """Independent closed-form parameter count of the StyleGAN2 networks (no module code involved)."""
    ch = lambda r: min(base // r, cmax)  # noqa: E731
    fc = lambda i, o: i * o + o  # noqa: E731
    embed = w if c_dim else 0
    mapping = fc(c_dim, embed) * (c_dim > 0) + fc(z + embed, w) + (map_layers - 1) * fc(w, w)
    modconv = lambda i, o, k: fc(w, i) + o * i * k * k + o + 1  # affine + weight + bias + noise strength  # noqa: E731
    torgb = lambda i: fc(w, i) + rgb * i + rgb  # noqa: E731
    synthesis = ch(4) * 16 + modconv(ch(4), ch(4), 3) + torgb(ch(4))
    for r in (2 ** i for i in range(3, int(math.log2(res)) + 1)):
        synthesis += modconv(ch(r // 2), ch(r), 3) * 1 + modconv(ch(r), ch(r), 3) + torgb(ch(r))
    disc = fc(rgb, ch(res))  # fromrgb 1x1 (same count as a dense layer)
    for r in (2 ** i for i in range(int(math.log2(res)), 2, -1)):
        disc += ch(r) * ch(r) * 9 + ch(r) + ch(r // 2) * ch(r) * 9 + ch(r // 2)
        disc += ch(r // 2) * ch(r) if d_arch == "resnet" else 0
    cmap = ch(4) if c_dim else 0
    disc += ch(4) * (ch(4) + 1) * 9 + ch(4) + fc(ch(4) * 16, ch(4)) + fc(ch(4), cmap or 1)
    disc += (fc(c_dim, cmap) + 8 * fc(cmap, cmap)) if c_dim else 0
    return mapping, synthesis, disc


@pytest.mark.parametrize("preset,cfg", [
    ("paper512", (512, 32768, 8, 0, "resnet", 8)),
    ("auto@128,c5", (128, 16384, 2, 5, "resnet", 4)),
    ("cifar", (32, 32768, 2, 10, "orig", 32)),
    ("stylegan2", (1024, 32768, 8, 0, "resnet", 4)),
])
def test_parameter_counts_match_closed_form(preset, cfg):
    G, D = preset_networks(*cfg)
    mapping, synthesis, disc = analytic_counts(*cfg[:5])
    assert (count(G.mapping), count(G.synthesis), count(D)) == (mapping, synthesis, disc)


def test_state_dict_names_and_shapes_follow_upstream_cifar_layout():
    G, D = preset_networks(32, 32768, 2, 10, "orig", 32)
    g = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    keys = list(g)
    assert keys[:13] == [
        "synthesis.b4.const", "synthesis.b4.resample_filter",
        "synthesis.b4.conv1.weight", "synthesis.b4.conv1.noise_strength", "synthesis.b4.conv1.bias",
        "synthesis.b4.conv1.resample_filter", "synthesis.b4.conv1.noise_const",
        "synthesis.b4.conv1.affine.weight", "synthesis.b4.conv1.affine.bias",
        "synthesis.b4.torgb.weight", "synthesis.b4.torgb.bias",
        "synthesis.b4.torgb.affine.weight", "synthesis.b4.torgb.affine.bias"]
    assert keys[-7:] == ["mapping.w_avg", "mapping.embed.weight", "mapping.embed.bias", "mapping.fc0.weight",
                         "mapping.fc0.bias", "mapping.fc1.weight", "mapping.fc1.bias"]
    assert g["synthesis.b4.const"] == (512, 4, 4)
    assert g["synthesis.b32.conv0.noise_const"] == (32, 32)
    assert g["synthesis.b4.torgb.weight"] == (3, 512, 1, 1)
    assert g["mapping.fc0.weight"] == (512, 1024)
    assert g["mapping.embed.weight"] == (512, 10)

    d = {k: tuple(v.shape) for k, v in D.state_dict().items()}
    assert list(d)[:10] == ["b32.resample_filter", "b32.fromrgb.weight", "b32.fromrgb.bias",
                            "b32.fromrgb.resample_filter", "b32.conv0.weight", "b32.conv0.bias",
                            "b32.conv0.resample_filter", "b32.conv1.weight", "b32.conv1.bias",
                            "b32.conv1.resample_filter"]
    tail = list(d)[list(d).index("mapping.embed.weight"):]
    assert tail[:4] == ["mapping.embed.weight", "mapping.embed.bias", "mapping.fc0.weight", "mapping.fc0.bias"]
    assert tail[-7:] == ["b4.conv.weight", "b4.conv.bias", "b4.conv.resample_filter", "b4.fc.weight",
                         "b4.fc.bias", "b4.out.weight", "b4.out.bias"]
    assert sum(k.startswith("mapping.fc") for k in d) == 16
    assert d["b4.conv.weight"] == (512, 513, 3, 3)
    assert d["b4.fc.weight"] == (512, 8192)
    assert d["b4.out.weight"] == (512, 512)


def test_unconditional_resnet_discriminator_has_skip_without_bias():
    with torch.device("meta"):
        D = networks.Discriminator(0, 16, 3, channel_base=16384)
    d = {k: tuple(v.shape) for k, v in D.state_dict().items()}
    assert list(d)[:12] == ["b16.resample_filter", "b16.fromrgb.weight", "b16.fromrgb.bias",
                            "b16.fromrgb.resample_filter", "b16.conv0.weight", "b16.conv0.bias",
                            "b16.conv0.resample_filter", "b16.conv1.weight", "b16.conv1.bias",
                            "b16.conv1.resample_filter", "b16.skip.weight", "b16.skip.resample_filter"]
    assert "b16.skip.bias" not in d
    assert d["b16.skip.weight"] == (512, 512, 1, 1)
    assert d["b4.out.weight"] == (1, 512)


# ----------------------------------------------------------------------------
# Shapes, architectures, gradients.

@pytest.mark.parametrize("res", [4, 8, 16, 32, 64, 128, 256, 512, 1024])
def test_generator_and_discriminator_shapes_for_every_resolution(res):
    torch.manual_seed(0)
    small = dict(channel_base=2 * res, channel_max=4)  # 2..4 channels: 1024 px costs little
    G = networks.Generator(4, 0, 4, res, 3, mapping_kwargs=dict(num_layers=1), synthesis_kwargs=small).eval()
    assert G.num_ws == 2 * int(math.log2(res)) - 2
    with torch.no_grad():
        img = G(torch.randn(1, 4), None, noise_mode="none")
    assert img.shape == (1, 3, res, res) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    if res >= 8:
        D = networks.Discriminator(0, res, 3, epilogue_kwargs=dict(mbstd_group_size=2), **small)
        with torch.no_grad():
            logits, features = D(img, None, return_features=True)
        assert logits.shape == (1, 1) and torch.isfinite(logits).all()
        assert features.shape == (1, min(2 * res // 4, 4), 4, 4) and features.dtype == torch.float32


@pytest.mark.parametrize("res", [32, 64])
@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_forward_backward_reaches_every_parameter(res, architecture):
    G = tiny_G(res, architecture=architecture)
    D = tiny_D(res, architecture=architecture)
    img = G(torch.randn(2, 16), None)  # training mode: random noise, unfused modconv
    logits, features = D(img, None, return_features=True)
    assert logits.shape == (2, 1)
    (F.softplus(-logits).mean() + features.square().mean()).backward()
    for module in (G, D):
        for name, param in module.named_parameters():
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
            assert param.grad.abs().sum() > 0, name


def test_architectures_have_their_upstream_layers():
    orig, skip, resnet = (tiny_G(32, architecture=a) for a in ("orig", "skip", "resnet"))
    assert not hasattr(orig.synthesis.b16, "torgb") and hasattr(orig.synthesis.b32, "torgb")
    assert hasattr(skip.synthesis.b16, "torgb") and not hasattr(skip.synthesis.b16, "skip")
    assert hasattr(resnet.synthesis.b16, "skip") and not hasattr(resnet.synthesis.b16, "torgb")
    assert orig.num_ws == skip.num_ws == resnet.num_ws == 8
    d_orig, d_skip = tiny_D(32, architecture="orig"), tiny_D(32, architecture="skip")
    assert not hasattr(d_orig.b16, "fromrgb") and not hasattr(d_orig.b16, "skip")
    assert hasattr(d_skip.b16, "fromrgb") and hasattr(d_skip.b4, "fromrgb")


def test_bad_options_fail_with_the_option_named():
    with pytest.raises(ValueError, match="img_resolution=48"):
        networks.Generator(4, 0, 4, 48, 3)
    with pytest.raises(ValueError, match="architecture='wide'"):
        tiny_G(architecture="wide")
    with pytest.raises(ValueError, match="noise_mode='loud'"):
        tiny_G(8)(torch.randn(1, 16), None, noise_mode="loud")
    with pytest.raises(ValueError, match="conditional"):
        tiny_G(8, c_dim=3)(torch.randn(1, 16), None)


# ----------------------------------------------------------------------------
# Layers against independent references.

def test_fully_connected_layer_uses_equalised_learning_rate():
    torch.manual_seed(0)
    layer = networks.FullyConnectedLayer(8, 5, activation="lrelu", lr_multiplier=0.01, bias_init=0.3)
    assert torch.allclose(layer.bias, torch.full([5], 0.3))
    x = torch.randn(3, 8)
    w = layer.weight.detach() * 0.01 / math.sqrt(8)
    expected = F.leaky_relu(x @ w.T + layer.bias.detach() * 0.01, 0.2) * math.sqrt(2)
    torch.testing.assert_close(layer(x), expected)


def reference_modconv(x, weight, styles, demodulate, padding):
    """Per-sample loop with explicit weight modulation and demodulation."""
    outs = []
    for n in range(x.shape[0]):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        outs.append(F.conv2d(x[n:n + 1], w, padding=padding))
    return torch.cat(outs)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv_matches_per_sample_reference(demodulate, fused):
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.rand(3, 4) + 0.5
    out = networks.modulated_conv2d(x, weight, styles, padding=1, demodulate=demodulate, fused_modconv=fused)
    torch.testing.assert_close(out, reference_modconv(x, weight, styles, demodulate, 1), rtol=1e-4, atol=1e-4)


def reference_mbstd(x, group):
    """Numpy minibatch stddev: sample i is in group i mod (N / group)."""
    x = x.numpy().astype(np.float64)
    n = x.shape[0]
    groups = n // group
    stats = np.empty(n)
    for i in range(n):
        members = x[[j for j in range(n) if j % groups == i % groups]]
        stats[i] = np.sqrt(members.var(axis=0) + 1e-8).mean()
    return stats


@pytest.mark.parametrize("n,group_size,effective", [(8, 4, 4), (6, 4, 3), (5, 4, 1), (3, 4, 3), (7, None, 7)])
def test_minibatch_std_groups_any_batch_size(n, group_size, effective):
    assert networks.effective_group_size(group_size, n) == effective
    torch.manual_seed(0)
    x = torch.randn(n, 6, 4, 4)
    y = networks.MinibatchStdLayer(group_size)(x)
    assert y.shape == (n, 7, 4, 4)
    torch.testing.assert_close(y[:, :6], x)
    expected = reference_mbstd(x, effective)
    torch.testing.assert_close(y[:, 6].double(), torch.tensor(expected)[:, None, None].expand(n, 4, 4), rtol=1e-5,
                               atol=1e-6)


def test_fused_and_unfused_modconv_give_the_same_image():
    G = tiny_G(32).eval()
    z = torch.randn(3, 16)
    fused = G(z, None, noise_mode="const", fused_modconv=True)
    unfused = G(z, None, noise_mode="const", fused_modconv=False)
    torch.testing.assert_close(fused, unfused, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------
# Mapping: truncation and w_avg.

def test_truncation_psi_zero_gives_w_avg_and_cutoff_limits_it():
    G = tiny_G(16).eval()
    G.mapping.w_avg.copy_(torch.randn(16))
    z = torch.randn(4, 16)
    ws = G.mapping(z, None, truncation_psi=0)
    torch.testing.assert_close(ws, G.mapping.w_avg.expand(4, G.num_ws, 16))
    plain = G.mapping(z, None)
    half = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(half[:, :2], G.mapping.w_avg + 0.5 * (plain[:, :2] - G.mapping.w_avg))
    torch.testing.assert_close(half[:, 2:], plain[:, 2:])
    img = G(z, None, truncation_psi=0, noise_mode="const")
    torch.testing.assert_close(img[0].expand_as(img), img)  # every z maps to the same image


def test_w_avg_updates_only_in_training_mode_with_update_emas():
    G = tiny_G(8)
    G.mapping.w_avg.copy_(torch.ones(16))
    z = torch.randn(5, 16)
    G.eval()
    G.mapping(z, None, update_emas=True)
    torch.testing.assert_close(G.mapping.w_avg, torch.ones(16))
    G.train()
    G.mapping(z, None)
    torch.testing.assert_close(G.mapping.w_avg, torch.ones(16))
    ws = G.mapping(z, None, update_emas=True)
    batch_mean = ws[:, 0].detach().mean(dim=0)
    torch.testing.assert_close(G.mapping.w_avg, batch_mean + 0.995 * (torch.ones(16) - batch_mean))


def test_mapping_normalises_z_and_broadcasts():
    G = tiny_G(8)
    z = torch.randn(2, 16)
    torch.testing.assert_close(G.mapping(z * 7.0, None), G.mapping(z, None), rtol=1e-5, atol=1e-6)
    ws = G.mapping(z, None)
    assert ws.shape == (2, G.num_ws, 16)
    torch.testing.assert_close(ws[:, 0:1].expand_as(ws), ws)


# ----------------------------------------------------------------------------
# Noise modes, conditioning, features, Freeze-D, FP16 flags on CPU.

def test_noise_modes():
    G = tiny_G(16).eval()
    for name, param in G.named_parameters():
        if name.endswith("noise_strength"):
            param.data.fill_(0.5)
    z = torch.randn(2, 16)
    const_a, const_b = G(z, None, noise_mode="const"), G(z, None, noise_mode="const")
    torch.testing.assert_close(const_a, const_b, rtol=0, atol=0)
    random_a, random_b = G(z, None, noise_mode="random"), G(z, None, noise_mode="random")
    assert (random_a - random_b).abs().max() > 1e-3
    none = G(z, None, noise_mode="none")
    assert (none - const_a).abs().max() > 1e-3
    for name, param in G.named_parameters():
        if name.endswith("noise_strength"):
            param.data.zero_()
    torch.testing.assert_close(G(z, None, noise_mode="random"), none)


def test_conditional_generator_and_projection_discriminator():
    G, D = tiny_G(16, c_dim=3), tiny_D(16, c_dim=3)
    G.eval()
    z = torch.randn(1, 16).repeat(2, 1)
    c = torch.eye(3)[:2]
    img = G(z, c, noise_mode="const")
    assert (img[0] - img[1]).abs().max() > 1e-4  # same z, different labels
    captured = {}
    D.b4.out.register_forward_hook(lambda mod, inp, out: captured.setdefault("out", out))
    logits = D(img, c)
    cmap = D.mapping(None, c)
    expected = (captured["out"] * cmap).sum(dim=1, keepdim=True) / math.sqrt(cmap.shape[1])
    torch.testing.assert_close(logits, expected)
    assert D.mapping.fc1.weight.shape == (32, 32) and cmap.shape == (2, 32)


def test_discriminator_features_are_the_epilogue_input():
    D = tiny_D(32)
    captured = {}
    D.b4.register_forward_hook(lambda mod, args, out: captured.setdefault("x", args[0]))
    img = torch.randn(4, 3, 32, 32)
    logits, features = D(img, None, return_features=True)
    assert features.shape == (4, 32, 4, 4)
    torch.testing.assert_close(features, captured["x"])
    torch.testing.assert_close(logits, D(img, None))


def test_freeze_d_turns_the_first_layers_into_buffers_with_the_same_names():
    D = tiny_D(32, block_kwargs=dict(freeze_layers=5))
    free = tiny_D(32)
    assert {k: v.shape for k, v in D.state_dict().items()} == {k: v.shape for k, v in free.state_dict().items()}
    frozen = {n for n, _ in D.named_buffers() if n.endswith(("weight", "bias"))}
    # b32: fromrgb, conv0, conv1, skip (layers 0-3); b16.conv0 is layer 4; b16.conv1 is trainable.
    assert {"b32.fromrgb.weight", "b32.skip.weight", "b16.conv0.weight", "b16.conv0.bias"} <= frozen
    assert "b16.conv1.weight" in dict(D.named_parameters())
    assert count(D) == count(free) - sum(D.state_dict()[n].numel() for n in frozen)


def test_fp16_blocks_run_in_float32_on_cpu_with_identical_results():
    G32 = tiny_G(32)
    G16 = tiny_G(32, num_fp16_res=2, conv_clamp=256, fp16_channels_last=True)
    assert [G16.synthesis.b16.use_fp16, G16.synthesis.b32.use_fp16, G16.synthesis.b8.use_fp16] == [True, True, False]
    G16.load_state_dict(G32.state_dict())
    z = torch.randn(2, 16)
    torch.testing.assert_close(G16.eval()(z, None, noise_mode="const"), G32.eval()(z, None, noise_mode="const"))
    D = tiny_D(32, num_fp16_res=2, conv_clamp=256, block_kwargs=dict(fp16_channels_last=True))
    assert D.b32.use_fp16 and not D.b8.use_fp16
    assert D(torch.randn(2, 3, 32, 32), None).dtype == torch.float32


def test_init_kwargs_are_recorded_and_rebuild_the_same_architecture():
    G = tiny_G(16, c_dim=2)
    assert G.init_kwargs["synthesis_kwargs"]["channel_base"] == 256
    clone = networks.Generator(*G.init_args, **G.init_kwargs)
    assert {k: v.shape for k, v in clone.state_dict().items()} == {k: v.shape for k, v in G.state_dict().items()}
    G.init_kwargs["c_dim"] = 99  # a copy: the record cannot be changed from outside
    assert G.init_kwargs["c_dim"] == 2


@pytest.mark.cuda
def test_fp16_on_cuda_is_close_to_fp32():
    G32 = tiny_G(64).cuda().eval()
    G16 = tiny_G(64, num_fp16_res=3, conv_clamp=256, fp16_channels_last=True).cuda().eval()
    G16.load_state_dict(G32.state_dict())
    z = torch.randn(4, 16, device="cuda")
    a, b = G32(z, None, noise_mode="const"), G16(z, None, noise_mode="const")
    assert b.dtype == torch.float32
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    D = tiny_D(64, num_fp16_res=3, conv_clamp=256).cuda()
    logits, features = D(b, None, return_features=True)
    assert logits.dtype == features.dtype == torch.float32
