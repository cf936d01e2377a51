"""export.py --format=upstream: the pickle upstream's loader opens, run against exactly upstream's torch_utils API.

The embedded source (training/networks.py) is executed here against a stub torch_utils that holds only the
names the interop facts list (tests/upstream_stub.py), the way upstream's `legacy.load_network_pkl` would; its
outputs must equal ours. Our own loader reads the same file without executing anything.
"""

from __future__ import annotations

import ast
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import export
from test_network_pickle import assert_same_networks, make_D, make_G, pickled_globals, upstream_pickle
from test_network_pickle import write_snapshot as write_network_snapshot
from training import network_pickle, networks, upstream_export
from upstream_stub import STUB_API, force_fp16_like_upstream, install_stub, load_like_upstream, uninstall_executed

KWARGS = dict(path="faces.zip", use_labels=False, max_size=None, xflip=True, resolution=16)
SEEDS = [0, 1, 2, 3, 4, 5, 6, 7]
# Same ops, same order of operations: the stub run reproduces ours to rounding; 1e-5 is the bound.
TOLERANCE = 1e-5


def write_snapshot(tmp_path, c_dim=0, architecture="skip"):
    return write_network_snapshot(tmp_path, KWARGS, c_dim=c_dim, architecture=architecture)


def export_upstream(tmp_path, pkl, *extra):
    out = tmp_path / "exported-upstream.pkl"
    result = CliRunner().invoke(export.main, [f"--network={pkl}", "--format=upstream", f"--out={out}", *extra])
    assert result.exit_code == 0, result.output
    return out


def seed_inputs(G, seeds, c_dim):
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds])).float()
    c = torch.eye(c_dim)[[s % c_dim for s in seeds]] if c_dim else torch.zeros([len(seeds), 0])
    return z, c


def run_generator(G, c_dim, psi=0.7):
    z, c = seed_inputs(G, SEEDS, c_dim)
    with torch.no_grad():
        return G(z, c, truncation_psi=psi, noise_mode="const")


def test_networks_module_uses_only_upstreams_torch_utils_api():
    assert upstream_export.api_violations(upstream_export.network_module_source()) == []
    # The checker's table is the one the stub implements (the interop facts), less the loader-only reconstructor.
    stub = {module: names - {"_reconstruct_persistent_obj"} for module, names in STUB_API.items()}
    assert {module: set(names) for module, names in upstream_export.UPSTREAM_API.items()} == stub
    bad = "from torch_utils import misc, training_stats\nfrom torch_utils.ops import bias_act\nimport dnnlib\n" \
          "misc.constant(1)\nbias_act.ACTIVATIONS\n"
    assert upstream_export.api_violations(bad) == [
        "from torch_utils import training_stats",
        "import of dnnlib (only numpy, torch, the standard library and upstream's torch_utils)",
        "torch_utils.ops.bias_act.ACTIVATIONS (line 5)", "torch_utils.misc.constant (line 4)"]


def test_file_is_upstreams_record_format(tmp_path):
    pkl, G, D, G_ema = write_snapshot(tmp_path)
    data = export_upstream(tmp_path, pkl).read_bytes()
    refs = pickled_globals(data)
    assert "torch_utils.persistence._reconstruct_persistent_obj" in refs
    assert not any(ref.startswith(("training.", "torch_utils.persistence.rebuild")) for ref in refs), refs
    # Records as upstream's loader sees them, read without running anything.
    records = []

    class Inspect(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch_utils.persistence", "_reconstruct_persistent_obj"):
                return lambda meta: records.append(meta) or meta
            return super().find_class(module, name)

    snapshot = Inspect(__import__("io").BytesIO(data)).load()
    assert set(snapshot) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert snapshot["augment_pipe"] is None and snapshot["training_set_kwargs"] == KWARGS
    top = snapshot["G_ema"]
    assert set(top) == {"type", "version", "module_src", "class_name", "state"}
    assert (top["type"], top["version"], top["class_name"]) == ("class", 6, "Generator")
    assert top["module_src"] == upstream_export.network_module_source()
    assert top["state"]["_init_kwargs"] == G_ema.init_kwargs and top["state"]["_init_args"] == ()
    assert top["state"]["training"] is False
    assert {r["class_name"] for r in records} >= {"MappingNetwork", "SynthesisBlock", "SynthesisLayer",
                                                 "ToRGBLayer", "FullyConnectedLayer", "DiscriminatorBlock"}
    assert data.count(b"Portability: this module's source is embedded") == 1  # the source is stored once


@pytest.mark.parametrize("c_dim, architecture", [(0, "skip"), (2, "resnet")])
def test_embedded_source_run_on_upstreams_api_gives_our_outputs(tmp_path, monkeypatch, c_dim, architecture):
    pkl, G, D, G_ema = write_snapshot(tmp_path, c_dim, architecture)
    out = export_upstream(tmp_path, pkl)
    want_G, want_G_ema = run_generator(G, c_dim), run_generator(G_ema, c_dim)
    img = torch.randn(4, 3, 16, 16)
    c4 = seed_inputs(G, SEEDS[:4], c_dim)[1]
    want_D = D(img, c4 if c_dim else None)
    want_ws = G_ema.mapping(*seed_inputs(G, SEEDS, c_dim))

    persist = install_stub(monkeypatch)
    try:
        data = load_like_upstream(out)
        theirs = data["G_ema"]
        assert type(theirs).__module__.startswith("_imported_module_")  # built from the embedded source
        assert persist.executed and len(persist.modules_by_src) == 1
        torch.testing.assert_close(run_generator(data["G_ema"], c_dim), want_G_ema, rtol=0, atol=TOLERANCE)
        torch.testing.assert_close(run_generator(data["G"], c_dim), want_G, rtol=0, atol=TOLERANCE)
        torch.testing.assert_close(data["D"](img, c4 if c_dim else None), want_D, rtol=0, atol=TOLERANCE)
        # What upstream's tools read besides the forward pass.
        assert (theirs.z_dim, theirs.c_dim, theirs.w_dim, theirs.img_resolution, theirs.img_channels) == \
            (G_ema.z_dim, G_ema.c_dim, G_ema.w_dim, G_ema.img_resolution, G_ema.img_channels)
        assert theirs.num_ws == G_ema.num_ws and theirs.synthesis.block_resolutions == [4, 8, 16]
        assert torch.equal(theirs.mapping.w_avg, G_ema.mapping.w_avg)
        assert sum("noise_const" in name for name, _ in theirs.synthesis.named_buffers()) == 5
        torch.testing.assert_close(theirs.mapping(*seed_inputs(G, SEEDS, c_dim)), want_ws, rtol=0, atol=TOLERANCE)
        assert theirs.init_kwargs == G_ema.init_kwargs and isinstance(theirs.synthesis.b16, torch.nn.Module)
        # Upstream's --force-fp16 rebuilds from init_kwargs: the constructors run on the stub API too.
        fp16 = force_fp16_like_upstream(theirs)
        assert fp16.synthesis.b16.use_fp16
        torch.testing.assert_close(run_generator(fp16, c_dim), want_G_ema, rtol=0, atol=TOLERANCE)  # FP32 on CPU
    finally:
        uninstall_executed(persist)


@pytest.mark.parametrize("c_dim, architecture", [(0, "skip"), (2, "resnet")])
def test_round_trip_through_our_loader_is_exact_and_runs_nothing(tmp_path, monkeypatch, c_dim, architecture):
    pkl, G, D, G_ema = write_snapshot(tmp_path, c_dim, architecture)
    out = export_upstream(tmp_path, pkl)
    executed = []
    monkeypatch.setattr("builtins.exec", lambda *args, **kwargs: executed.append(args))
    loaded = network_pickle.load_network_pkl(str(out))
    assert not executed
    assert type(loaded["G_ema"]) is networks.Generator and type(loaded["D"]) is networks.Discriminator
    assert_same_networks(G, loaded["G"], D, loaded["D"], c_dim=c_dim)
    assert_same_networks(G_ema, loaded["G_ema"], c_dim=c_dim)
    assert loaded["training_set_kwargs"] == KWARGS and loaded["G_ema"].init_kwargs == G_ema.init_kwargs


def test_upstream_pickle_in_upstream_pickle_out(tmp_path, monkeypatch):
    G, D = make_G(c_dim=2), make_D(c_dim=2)
    path, marker = upstream_pickle(tmp_path, dict(G=G, D=D, G_ema=G, training_set_kwargs=None))
    out = export_upstream(tmp_path, path)
    assert not marker.exists()  # the source's own embedded code never ran; ours replaces it
    persist = install_stub(monkeypatch)
    try:
        data = load_like_upstream(out)
        torch.testing.assert_close(run_generator(data["G_ema"], 2), run_generator(G, 2), rtol=0, atol=TOLERANCE)
    finally:
        uninstall_executed(persist)


def test_needs_all_three_networks(tmp_path):
    pkl = tmp_path / "g_only.pkl"
    network_pickle.save_network_pkl(str(pkl), dict(G_ema=make_G()))
    for extra, message in (([], "holds no G or D (upstream's loader needs G, D and G_ema) (it has: G_ema)"),
                           (["--which=G_ema"], "--which=G_ema: upstream's loader needs G, D and G_ema")):
        out = tmp_path / "out.pkl"
        result = CliRunner().invoke(export.main, [f"--network={pkl}", "--format=upstream", f"--out={out}", *extra])
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 1 and len(errors) == 1 and message in errors[0], result.output
        assert not out.exists()


def test_a_network_module_outside_the_api_is_refused_before_writing(tmp_path, monkeypatch):
    pkl, _, _, _ = write_snapshot(tmp_path)
    source = upstream_export.network_module_source().replace("misc.assert_shape(", "misc.constant(", 1)
    monkeypatch.setattr(upstream_export, "network_module_source", lambda: source)
    out = tmp_path / "out.pkl"
    result = CliRunner().invoke(export.main, [f"--network={pkl}", "--format=upstream", f"--out={out}"])
    assert result.exit_code == 1 and "uses torch_utils.misc.constant" in result.output and not out.exists()
    ast.parse(source)  # the edit kept it valid Python: the refusal is the API check's


def test_tampered_export_is_refused_by_our_loader_and_its_source_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "source_was_executed"
    monkeypatch.setattr(upstream_export, "network_module_source",
                        lambda: f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    G, D = make_G(), make_D()
    path = str(tmp_path / "tampered.pkl")
    upstream_export.write_upstream_pkl(path, dict(G=G, D=D, G_ema=G), None)
    assert_same_networks(G, network_pickle.load_network_pkl(path)["G_ema"])  # data only: the source is ignored
    G.synthesis.b16.conv1.bias = torch.nn.Parameter(torch.zeros(5))  # a tensor that no longer fits the arguments
    upstream_export.write_upstream_pkl(path, dict(G=G, D=D, G_ema=G), None)
    with pytest.raises(network_pickle.NetworkPickleError, match=r"Generator tensors do not match.*b16\.conv1\.bias"):
        network_pickle.load_network_pkl(path)
    assert not marker.exists()
