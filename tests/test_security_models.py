"""Forged init arguments and non-finite networks (issue 24): one-line refusals in every tool, nothing written.

Forged records (ours and upstream's) are refused by the documented ranges of torch_utils/init_arg_limits.py before
anything is built; a network holding NaN/Inf, or producing it, is refused by training/finite_checks.py in
generate.py, style_mixing.py, projector.py, calc_metrics.py and scripts/latent_continuity.py.
"""

from __future__ import annotations

import io
import pickle
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import generate
import projector
import style_mixing
from latent_helpers import random_vgg16, write_image_folder
from metrics import detectors
from scripts import latent_continuity
from test_security_names import Reduce, one_line_error, tiny_G
from torch_utils import init_arg_limits, persistence
from training import finite_checks, network_pickle
from training.network_pickle import save_network_pkl
from training.networks import Generator

HANG_GUARD_S = 10  # a refusal takes well under 0.1 s here; the forged cases used to hang or take minutes


def _forged_record(**changes) -> dict:
    """Our record of a 16 px generator with init kwargs changed (nested dicts are merged one level deep)."""
    record = persistence.make_record(tiny_G())
    kwargs = dict(record["init_kwargs"])
    for key, value in changes.items():
        kwargs[key] = dict(kwargs.get(key, {}), **value) if isinstance(value, dict) else value
    record["init_kwargs"] = kwargs
    return record


def _record_pickle(record: dict) -> bytes:
    return pickle.dumps({"G_ema": Reduce(persistence.rebuild_persistent_module, record)})


class UpstreamObject:
    """Pickles like an upstream persistent object; only init kwargs, no tensors (the refusal comes first)."""

    def __init__(self, class_name: str, init_kwargs: dict):
        self.meta = dict(type="class", version=persistence.UPSTREAM_RECORD_VERSION, module_src="raise SystemExit",
                         class_name=class_name, state=dict(_init_args=(), _init_kwargs=init_kwargs, training=False,
                                                           _parameters={}, _buffers={}, _modules={}))

    def __reduce__(self):
        return persistence._reconstruct_persistent_obj, (self.meta,)


SHARED = [0] * 64
for _ in range(6):
    SHARED = [SHARED] * 64  # 64**7 values if walked naively; 2 kB pickled

CYCLE: dict = {}
CYCLE["self"] = CYCLE  # a dict that holds itself: any unbounded walk never ends

FORGED = {
    "img_resolution=2**20": (dict(img_resolution=2 ** 20), "img_resolution=1048576 must be a power of two in [4, 8192]"),
    "img_resolution=2": (dict(img_resolution=2), "img_resolution=2 must be a power of two in [4, 8192]"),
    "img_resolution=24": (dict(img_resolution=24), "img_resolution=24 must be a power of two"),
    "channel_max=0": (dict(synthesis_kwargs=dict(channel_max=0)), "channel_max=0 is outside [1, 8192]"),
    "channel_base=1": (dict(synthesis_kwargs=dict(channel_base=1)), "channel_base=1 gives the 16 px layers no channels"),
    "num_layers=200000": (dict(mapping_kwargs=dict(num_layers=200000)), "num_layers=200000 is outside [1, 64]"),
    "num_fp16_res=-2**40": (dict(synthesis_kwargs=dict(num_fp16_res=-2 ** 40)),
                            "num_fp16_res=-1099511627776 is outside [0, 13]"),
    "w_dim=2**40": (dict(w_dim=2 ** 40), "w_dim=1099511627776 is outside [1, 4096]"),
    "z_dim=-1": (dict(z_dim=-1), "z_dim=-1 is outside [0, 4096]"),
    "img_channels=0": (dict(img_channels=0), "img_channels=0 is outside [1, 4]"),
    "img_resolution=16.0": (dict(img_resolution=16.0), "img_resolution=16.0 must be an integer"),
    "w_dim=True": (dict(w_dim=True), "w_dim=True must be a number, not true/false"),
    "a cycle": (dict(mapping_kwargs=CYCLE), "nests containers more than 200 deep"),  # load_budget's tree walk
    "conv_clamp=nan": (dict(synthesis_kwargs=dict(conv_clamp=float("nan"))), "conv_clamp=nan is outside"),
    "lr_multiplier=inf": (dict(mapping_kwargs=dict(lr_multiplier=float("inf"))), "lr_multiplier=inf is outside"),
    "unknown argument": (dict(mapping_kwargs=dict(bogus=1)), "cannot build training.networks.Generator from the "
                                                             "stored init arguments (TypeError"),
    "shared lists": (dict(synthesis_kwargs=dict(resample_filter=SHARED)), "expands to more than 1000000 objects"),
    "huge string": (dict(synthesis_kwargs=dict(architecture="x" * 10 ** 6)), "architecture is a string of 1000000"),
    "an object": (dict(synthesis_kwargs=dict(conv_clamp=torch.zeros(3))), "conv_clamp is a Tensor"),
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_forged_init_arguments_are_refused_in_one_line(tmp_path, case):
    changes, reason = FORGED[case]
    path = tmp_path / "forged.pkl"
    path.write_bytes(_record_pickle(_forged_record(**changes)))
    began = time.monotonic()
    with pytest.raises(network_pickle.NetworkPickleError) as info:
        network_pickle.load_network_pkl(str(path))
    assert time.monotonic() - began < HANG_GUARD_S
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and reason in message, message


@pytest.mark.parametrize("kwargs, reason", [
    (dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=2 ** 20, img_channels=3), "img_resolution=1048576"),
    (dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
          synthesis_kwargs=dict(channel_base=64, channel_max=0)), "channel_max=0 is outside"),
    (dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
          mapping_kwargs=dict(num_layers=200000)), "num_layers=200000"),
    (dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
          synthesis_kwargs=dict(num_fp16_res=-2 ** 40)), "num_fp16_res=-1099511627776"),
])
def test_forged_upstream_records_are_refused_before_conversion(kwargs, reason):
    data = pickle.dumps({"G_ema": UpstreamObject("Generator", kwargs)})
    began = time.monotonic()
    with pytest.raises(network_pickle.NetworkPickleError, match=r"^<file object>: Generator: ") as info:
        network_pickle.load_network_pkl(io.BytesIO(data))
    assert time.monotonic() - began < HANG_GUARD_S
    assert reason in str(info.value)


def test_init_arg_limits_accept_every_shipped_configuration():
    import train
    from training import networks
    from training.config import CFG_NAMES, DatasetInfo, build_training_options

    for cfg in CFG_NAMES:
        for res in (4, 32, 256, 1024):
            o = train.with_defaults(dict(outdir="/nonexistent", data="/nonexistent", cfg=cfg, gpus=1))
            o.workers = 0
            info = DatasetInfo(name="d", resolution=res, num_channels=3, label_dim=10, size=100)
            opts, _ = build_training_options(o, info, [])
            for cls, kwargs in ((networks.Generator, opts.G_kwargs), (networks.Discriminator, opts.D_kwargs)):
                kwargs = {k: v for k, v in kwargs.items() if k != "class_name"}
                kwargs.update(c_dim=10, img_resolution=res, img_channels=3)
                init_arg_limits.check_init_args(cls, (), kwargs, f"{cfg} {res}px")  # raises if out of range


# ----------------------------------------------------------------------------------------------------------------
# The five tools on a forged record: one line, non-zero exit, no traceback, nothing written.


@pytest.fixture
def forged_pkl(tmp_path):
    path = tmp_path / "forged.pkl"
    path.write_bytes(_record_pickle(_forged_record(synthesis_kwargs=dict(channel_max=0))))
    return path


@pytest.fixture
def no_vgg_download(monkeypatch):
    monkeypatch.setattr(detectors, "get_vgg16", lambda device=None, source=None: random_vgg16())


def _tool_args(tool: str, pkl, tmp_path) -> tuple:
    out = tmp_path / "out"
    target = write_image_folder(tmp_path / "data", 2, 16)
    first_image = sorted(target.iterdir())[0]
    return {
        "generate": (generate.main, [f"--network={pkl}", "--seeds=0-1", f"--outdir={out}"]),
        "style_mixing": (style_mixing.main, [f"--network={pkl}", "--rows=0", "--cols=1", f"--outdir={out}"]),
        "projector": (projector.main, [f"--network={pkl}", f"--target={first_image}", "--num-steps=2",
                                       f"--outdir={out}"]),
        "calc_metrics": (calc_metrics.main, [f"--network={pkl}", "--metrics=fid10_full", f"--data={target}"]),
        "latent_continuity": (latent_continuity.main, [f"--network={pkl}", f"--data={target}", f"--outdir={out}",
                                                       "--pairs=1", "--steps=2", "--ppl-samples=0", "--invert=0"]),
    }[tool]


TOOLS = ["generate", "style_mixing", "projector", "calc_metrics", "latent_continuity"]


def _written(tmp_path) -> list[str]:
    """What a tool left behind: the output folder's files and any metric lines beside the pickle."""
    out = [p.name for p in (tmp_path / "out").rglob("*")] if (tmp_path / "out").exists() else []
    return out + [p.name for p in tmp_path.glob("metric-*.jsonl")]


@pytest.mark.parametrize("tool", TOOLS)
def test_forged_record_gives_one_line_in_every_tool(tmp_path, forged_pkl, tool, no_vgg_download):
    main, args = _tool_args(tool, forged_pkl, tmp_path)
    line = one_line_error(CliRunner().invoke(main, args))
    assert "channel_max=0 is outside [1, 8192]" in line and "ZeroDivisionError" not in line
    assert _written(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# Non-finite networks, outputs and values.


def _nan_pkl(tmp_path, how: str):
    G = tiny_G()
    with torch.no_grad():
        if how == "nan weight":
            G.synthesis.b8.conv0.weight[0, 0, 0, 0] = float("nan")
        elif how == "inf buffer":
            G.mapping.w_avg[0] = float("inf")
        else:  # finite weights whose output overflows float32
            G.synthesis.b16.torgb.weight.fill_(3e38)
    path = tmp_path / "damaged.pkl"
    save_network_pkl(str(path), dict(G_ema=G, training_set_kwargs=None))
    return path


@pytest.mark.parametrize("tool", TOOLS)
def test_nan_network_is_refused_by_every_tool(tmp_path, tool, no_vgg_download):
    pkl = _nan_pkl(tmp_path, "nan weight")
    main, args = _tool_args(tool, pkl, tmp_path)
    line = one_line_error(CliRunner().invoke(main, args))
    assert f"{pkl}: the network holds non-finite values (1 in synthesis.b8.conv0.weight)" in line
    assert _written(tmp_path) == []


@pytest.mark.parametrize("how, reason", [("inf buffer", "non-finite values (1 in mapping.w_avg)"),
                                         ("overflowing output", "produces non-finite images")])
def test_inf_buffers_and_overflowing_outputs_are_refused(tmp_path, how, reason):
    pkl = _nan_pkl(tmp_path, how)
    main, args = _tool_args("generate", pkl, tmp_path)
    line = one_line_error(CliRunner().invoke(main, args))
    assert reason in line and str(pkl) in line and _written(tmp_path) == []


@pytest.mark.parametrize("tool", ["generate", "style_mixing"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_trunc_is_refused(tmp_path, tool, value):
    pkl = tmp_path / "ok.pkl"
    save_network_pkl(str(pkl), dict(G_ema=tiny_G(), training_set_kwargs=None))
    main, args = _tool_args(tool, pkl, tmp_path)
    line = one_line_error(CliRunner().invoke(main, [*args, f"--trunc={value}"]))
    assert f"--trunc={float(value)}: must be a finite number" in line and _written(tmp_path) == []


def test_non_finite_projected_w_is_refused(tmp_path):
    pkl = tmp_path / "ok.pkl"
    G = tiny_G()
    save_network_pkl(str(pkl), dict(G_ema=G, training_set_kwargs=None))
    w = np.zeros([2, G.num_ws, G.w_dim], dtype=np.float32)
    w[1, 0, 3] = np.nan
    np.savez(tmp_path / "w.npz", w=w)
    line = one_line_error(CliRunner().invoke(generate.main, [f"--network={pkl}", f"--projected-w={tmp_path / 'w.npz'}",
                                                             f"--outdir={tmp_path / 'out'}"]))
    assert f"--projected-w: {tmp_path / 'w.npz'}: 1 of {w.size} values are NaN or infinite" in line
    assert _written(tmp_path) == []


def test_finite_checks_pass_an_intact_network_and_name_what_is_wrong():
    G = tiny_G()
    finite_checks.require_finite_generator(G, "ok.pkl")  # no error
    with torch.no_grad():
        for name in ("mapping.fc0.weight", "mapping.fc1.bias", "synthesis.b4.const", "synthesis.b8.conv1.weight"):
            G.get_parameter(name).view(-1)[0] = float("nan")
    with pytest.raises(finite_checks.NonFiniteError, match=r"^x\.pkl: the network holds non-finite values \(1 in "
                                                           r"synthesis\.b4\.const, 1 in synthesis\.b8\.conv1\.weight, "
                                                           r"1 in mapping\.fc0\.weight and 1 more tensors\); "):
        finite_checks.require_finite_network(G, "x.pkl")


def test_state_dict_implying_a_forged_size_is_refused(tmp_path):
    """A bare torch.save state dict: the arguments inferred from its key names get the same range checks."""
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=8))  # 8 channels at every resolution
    state = dict(G.state_dict())
    for name in ("conv1.weight", "torgb.weight", "conv1.affine.weight"):
        state[f"synthesis.b{2 ** 21}.{name}"] = state[f"synthesis.b16.{name}"].clone()
    path = tmp_path / "inferred.pt"
    torch.save(state, path)
    began = time.monotonic()
    with pytest.raises(network_pickle.NetworkPickleError, match=r"inferred\.pt: img_resolution=2097152 must be a "
                                                                r"power of two in \[4, 8192\]"):
        network_pickle.load_network_pkl(str(path))
    assert time.monotonic() - began < HANG_GUARD_S
