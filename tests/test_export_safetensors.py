"""export.py --format=safetensors: exact round trips through our loader, the CLIs that read it, tampered files."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("safetensors")

import export  # noqa: E402
import generate  # noqa: E402
from test_network_pickle import assert_same_networks, make_D, make_G, upstream_pickle  # noqa: E402
from test_network_pickle import write_snapshot as write_network_snapshot  # noqa: E402
from training import network_pickle, network_safetensors, networks  # noqa: E402

KWARGS = dict(path="faces.zip", use_labels=True, max_size=None, xflip=False, resolution=16)


def write_snapshot(tmp_path, c_dim=0, architecture="skip"):
    return write_network_snapshot(tmp_path, KWARGS, c_dim=c_dim, architecture=architecture)


def run_export(*args):
    return CliRunner().invoke(export.main, list(args))


@pytest.mark.parametrize("c_dim, architecture", [(0, "skip"), (2, "resnet")])
def test_round_trip_is_exact_for_every_network(tmp_path, c_dim, architecture):
    pkl, G, D, G_ema = write_snapshot(tmp_path, c_dim, architecture)
    out = tmp_path / "net.safetensors"
    result = run_export(f"--network={pkl}", "--format=safetensors", f"--out={out}")
    assert result.exit_code == 0, result.output
    loaded = network_pickle.load_network_pkl(str(out))
    assert_same_networks(G, loaded["G"], D, loaded["D"], c_dim=c_dim)
    assert_same_networks(G_ema, loaded["G_ema"], c_dim=c_dim)
    assert loaded["G_ema"].init_kwargs == G_ema.init_kwargs and loaded["D"].init_kwargs == D.init_kwargs
    assert loaded["training_set_kwargs"] == KWARGS and loaded["augment_pipe"] is None
    for ours, theirs in zip(G_ema.state_dict().values(), loaded["G_ema"].state_dict().values()):
        assert torch.equal(ours, theirs)


def test_file_holds_no_pickle_and_documents_itself(tmp_path):
    pkl, G, D, G_ema = write_snapshot(tmp_path)
    out = tmp_path / "g.safetensors"
    assert run_export(f"--network={pkl}", "--format=safetensors", "--which=G_ema", f"--out={out}").exit_code == 0
    data = out.read_bytes()
    header = json.loads(data[8: 8 + struct.unpack("<Q", data[:8])[0]])
    meta = header.pop("__metadata__")
    assert meta["format"] == "fakeclr-networks" and meta["format_version"] == "1"
    entry = json.loads(meta["networks"])["G_ema"]
    assert entry["class"] == "Generator" and entry["init_kwargs"]["img_resolution"] == 16
    assert set(header) == {f"G_ema.{name}" for name in G_ema.state_dict()}
    assert json.loads(meta["training_set_kwargs"]) == KWARGS
    # A reader that knows only the safetensors library gets the same tensors.
    from safetensors.torch import load_file
    tensors = load_file(str(out))
    assert torch.equal(tensors["G_ema.mapping.w_avg"], G_ema.mapping.w_avg)
    loaded = network_pickle.load_network_pkl(str(out))
    assert set(loaded) == {"G_ema", "training_set_kwargs", "augment_pipe"}


def test_upstream_pickle_exports_too(tmp_path):
    G, D = make_G(c_dim=2), make_D(c_dim=2)
    path, marker = upstream_pickle(tmp_path, dict(G=G, D=D, G_ema=G, training_set_kwargs=None))
    out = tmp_path / "up.safetensors"
    assert run_export(f"--network={path}", "--format=safetensors", f"--out={out}").exit_code == 0
    loaded = network_pickle.load_network_pkl(str(out))
    assert_same_networks(G, loaded["G_ema"], D, loaded["D"], c_dim=2)
    assert not marker.exists()


def test_generate_reads_the_export(tmp_path):
    pkl, _, _, _ = write_snapshot(tmp_path)
    out = tmp_path / "net.safetensors"
    assert run_export(f"--network={pkl}", "--format=safetensors", f"--out={out}").exit_code == 0
    for network, outdir in ((pkl, tmp_path / "a"), (out, tmp_path / "b")):
        result = CliRunner().invoke(generate.main, [f"--network={network}", "--seeds=3", f"--outdir={outdir}"])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "seed0003.png").read_bytes() == (tmp_path / "b" / "seed0003.png").read_bytes()


def test_existing_out_is_kept_unless_forced(tmp_path):
    pkl, _, _, _ = write_snapshot(tmp_path)
    out = tmp_path / "net.safetensors"
    out.write_bytes(b"keep me")
    result = run_export(f"--network={pkl}", "--format=safetensors", f"--out={out}")
    assert result.exit_code == 1 and "already exists; choose another path or pass --force" in result.output
    assert out.read_bytes() == b"keep me" and len(result.output.strip().splitlines()) == 1
    assert run_export(f"--network={pkl}", "--format=safetensors", f"--out={out}", "--force").exit_code == 0
    assert network_pickle.load_network_pkl(str(out))["G_ema"] is not None


def test_missing_network_and_which_are_one_line_errors(tmp_path):
    result = run_export(f"--network={tmp_path / 'nope.pkl'}", "--format=safetensors", f"--out={tmp_path / 'x'}")
    assert result.exit_code == 2 and "--network=" in result.output and "no such network pickle" in result.output
    G = make_G()
    pkl = tmp_path / "g_only.pkl"
    network_pickle.save_network_pkl(str(pkl), dict(G_ema=G))
    result = run_export(f"--network={pkl}", "--format=safetensors", "--which=D", f"--out={tmp_path / 'x'}")
    assert result.exit_code == 1 and "holds no D (it has: G_ema)" in result.output
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------
# Tampered files.

def exported_bytes(tmp_path) -> bytes:
    pkl, _, _, _ = write_snapshot(tmp_path)
    out = tmp_path / "net.safetensors"
    assert run_export(f"--network={pkl}", "--format=safetensors", "--which=G_ema", f"--out={out}").exit_code == 0
    return out.read_bytes()


def rewrite(data: bytes, edit_header=None, edit_tensors=None) -> bytes:
    """Re-serialise with an edited header or tensor set, keeping a *valid* digest (a careful forger)."""
    from safetensors.torch import load, save
    header_len = struct.unpack("<Q", data[:8])[0]
    meta = json.loads(data[8: 8 + header_len])["__metadata__"]
    tensors = load(data)
    if edit_header:
        edit_header(meta)
    if edit_tensors:
        edit_tensors(tensors)
    draft = save(tensors, metadata=meta)
    import hashlib
    meta["data_sha256"] = hashlib.sha256(network_safetensors.data_section(draft)).hexdigest()
    return save(tensors, metadata=meta)


def refusal(tmp_path, data: bytes) -> str:
    path = tmp_path / "tampered.safetensors"
    path.write_bytes(data)
    with pytest.raises(network_pickle.NetworkPickleError) as info:
        network_pickle.load_network_pkl(str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_edited_tensor_bytes_are_refused(tmp_path):
    data = bytearray(exported_bytes(tmp_path))
    data[-3] ^= 0x40  # one bit of the last tensor
    assert "does not match the digest" in refusal(tmp_path, bytes(data))


def test_truncated_file_is_refused(tmp_path):
    data = exported_bytes(tmp_path)
    message = refusal(tmp_path, data[:-100])
    assert "digest" in message or "not a readable" in message


def test_mismatched_shapes_extra_tensors_and_foreign_classes_are_refused(tmp_path):
    data = exported_bytes(tmp_path)

    def reshape(tensors):
        tensors["G_ema.synthesis.b16.conv1.bias"] = torch.zeros(5)
    assert "reshaped: ['synthesis.b16.conv1.bias']" in refusal(tmp_path, rewrite(data, edit_tensors=reshape))

    def add(tensors):
        tensors["G_ema.synthesis.b16.conv1.extra"] = torch.zeros(5)
    assert "unexpected: ['synthesis.b16.conv1.extra']" in refusal(tmp_path, rewrite(data, edit_tensors=add))

    def stray(tensors):
        tensors["D.b16.conv0.weight"] = torch.zeros(5)
    assert "belong to no network" in refusal(tmp_path, rewrite(data, edit_tensors=stray))

    def foreign_class(meta):
        entries = json.loads(meta["networks"])
        entries["G_ema"]["class"] = "os.system"
        meta["networks"] = json.dumps(entries)
    assert "names class 'os.system'" in refusal(tmp_path, rewrite(data, edit_header=foreign_class))

    def huge(meta):
        entries = json.loads(meta["networks"])
        entries["G_ema"]["init_kwargs"]["img_resolution"] = 2 ** 13  # the largest resolution the ranges admit
        entries["G_ema"]["init_kwargs"]["synthesis_kwargs"]["channel_base"] = 2 ** 20
        meta["networks"] = json.dumps(entries)
    assert "the file holds" in refusal(tmp_path, rewrite(data, edit_header=huge))

    def bad_kwarg(meta):
        entries = json.loads(meta["networks"])
        entries["G_ema"]["init_kwargs"]["mapping_kwargs"]["num_layers"] = "eight"
        meta["networks"] = json.dumps(entries)
    assert "cannot build G_ema" in refusal(tmp_path, rewrite(data, edit_header=bad_kwarg))

    def zero_channels(meta):
        entries = json.loads(meta["networks"])
        entries["G_ema"]["init_kwargs"]["synthesis_kwargs"]["channel_base"] = 1
        meta["networks"] = json.dumps(entries)
    assert "cannot build G_ema" in refusal(tmp_path, rewrite(data, edit_header=zero_channels))


def test_plain_safetensors_without_our_metadata_is_refused(tmp_path):
    from safetensors.torch import save
    message = refusal(tmp_path, save({"weight": torch.zeros(3)}))
    assert "without fakeclr-networks metadata" in message and "export.py --format=safetensors" in message


def test_a_pickle_named_safetensors_is_not_unpickled(tmp_path):
    message = refusal(tmp_path, pickle.dumps({"G_ema": 1}))
    assert "not a .safetensors file" in message


def test_calc_metrics_and_the_latent_tools_read_the_export(tmp_path, embedded_dataset_dir, toy_detector):
    import calc_metrics
    from training import latent_io
    kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=str(embedded_dataset_dir), xflip=False)
    torch.manual_seed(0)
    G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=64, img_channels=3,
                           mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    G.eval()
    pkl = tmp_path / "snap.pkl"
    network_pickle.save_network_pkl(str(pkl), dict(G_ema=G, training_set_kwargs=kwargs))
    out = tmp_path / "snap.safetensors"
    assert run_export(f"--network={pkl}", "--format=safetensors", f"--out={out}").exit_code == 0
    # calc_metrics takes the dataset options from the file's metadata (without them it asks for --data).
    result = CliRunner().invoke(calc_metrics.main, [f"--network={out}", "--metrics=kid10", "--verbose=false"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "metric-kid10.jsonl").read_text())["snapshot_pkl"] == "snap.safetensors"
    loaded = latent_io.load_generator(str(out), torch.device("cpu"))  # projector.py's and style_mixing.py's loader
    assert_same_networks(G, loaded)
