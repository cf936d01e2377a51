"""Bounded loading: forged tensor sizes are refused before anything is allocated (issue 17, item 4)."""

from __future__ import annotations

import io
import pickle
import resource
import zipfile
from collections import OrderedDict

import pytest
import torch

from metrics import tensor_unpickler
from torch_utils import persistence, storage_records
from training import network_pickle, networks
from forged_pickles import Reduce, storage_blob

HUGE = 2 ** 35  # float32 elements: 128 GiB


def forge_numel(blob: bytes, real: int, claimed: int) -> bytes:
    """Declare `claimed` elements both in the storage record and in the payload header; keep the real bytes."""
    at = blob.index(b"cpuq") + 5  # ... 'cpu' MEMOIZE n, then BININT1 numel
    assert blob[at: at + 2] == b"K" + bytes([real])
    blob = blob[:at] + b"\x8a\x05" + claimed.to_bytes(5, "little") + blob[at + 2:]
    header = real.to_bytes(8, "little")
    at = blob.rindex(header)
    return blob[:at] + claimed.to_bytes(8, "little") + blob[at + 8:]


def tensor_record(blob: bytes, size: tuple, stride: tuple) -> Reduce:
    return Reduce(torch._utils._rebuild_tensor_v2, Reduce(torch.storage._load_from_bytes, blob), 0, size, stride,
                  False, OrderedDict())


@pytest.fixture
def torch_load_calls(monkeypatch):
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(1) or real_load(*a, **k))
    return calls


def test_forged_storage_size_is_refused_before_torch_allocates(tmp_path, torch_load_calls):
    blob = forge_numel(storage_blob(torch.arange(4, dtype=torch.float32)), real=4, claimed=HUGE)
    path = tmp_path / "forged.pkl"
    path.write_bytes(pickle.dumps({"G_ema": tensor_record(blob, (4,), (1,))}))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(network_pickle.NetworkPickleError,
                       match=rf"forged\.pkl: a tensor record declares {HUGE * 4} bytes but the file holds only 16 "):
        network_pickle.load_network_pkl(str(path))
    assert torch_load_calls == []  # refused by our own header check: torch never saw the blob
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 64 * 1024  # KiB: peak RSS unchanged


def test_forged_legacy_torch_save_file_is_refused_before_torch_allocates(tmp_path, torch_load_calls):
    buf = io.BytesIO()
    torch.save({"mapping.fc0.weight": torch.arange(4.0)}, buf, _use_new_zipfile_serialization=False)
    path = tmp_path / "legacy.pt"
    path.write_bytes(forge_numel(buf.getvalue(), real=4, claimed=HUGE))
    with pytest.raises(network_pickle.NetworkPickleError, match=rf"legacy\.pt: a tensor record declares {HUGE * 4} "):
        network_pickle.load_network_pkl(str(path))
    assert torch_load_calls == []


def test_honest_blob_passes_the_check_and_loads():
    blob = storage_blob(torch.arange(4, dtype=torch.float32))
    storage_records.check_legacy_storage_blob(blob)
    tensor = pickle.loads(pickle.dumps(torch.arange(4.0)))
    assert tensor.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_stride_zero_giant_is_refused(tmp_path):
    blob = storage_blob(torch.zeros(1))
    path = tmp_path / "expanded.pkl"
    path.write_bytes(pickle.dumps({"G_ema": tensor_record(blob, (2 ** 20, 2 ** 20), (0, 0))}))
    with pytest.raises(network_pickle.NetworkPickleError, match=r"expanded\.pkl: .*1099511627776 elements.*holds 1;"):
        network_pickle.load_network_pkl(str(path))


def test_forged_init_arguments_cannot_size_the_network(tmp_path):
    G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                           mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32))
    record = persistence.make_record(G)
    # Inside the documented ranges (torch_utils/init_arg_limits.py refuses more), yet ~10**9 values on the meta device.
    record["init_kwargs"] = dict(record["init_kwargs"], img_resolution=2 ** 13,
                                 synthesis_kwargs=dict(channel_base=2 ** 20, channel_max=2 ** 13))
    path = tmp_path / "big_args.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Reduce(persistence.rebuild_persistent_module, record)}))
    network_pickle.load_network_pkl(io.BytesIO(pickle.dumps({"G_ema": G})))  # first meta build imports modules
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(network_pickle.NetworkPickleError, match=r"big_args\.pkl: the stored arguments of "
                                                                r"training\.networks\.Generator make a network of \d+"):
        network_pickle.load_network_pkl(str(path))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 64 * 1024


def test_stride_zero_giant_in_a_torch_save_file_is_refused(tmp_path):
    path = tmp_path / "expanded.pt"
    torch.save({"mapping.fc0.weight": torch.zeros(1).expand(4096, 4096)}, path)
    with pytest.raises(network_pickle.NetworkPickleError, match=r"expanded\.pt: .*16777216 elements.*holds 1;"):
        network_pickle.load_network_pkl(str(path))


class ZipStorage:
    """Stands for storage "0" of a torch zip archive; written as a persistent id, never pickled itself."""


def zip_data_pkl(obj) -> bytes:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.persistent_id = lambda o: ("storage", torch.FloatStorage, "0", "cpu", 4) if isinstance(o, ZipStorage) else None
    pickler.dump(obj)
    return buf.getvalue()


def test_detector_reader_refuses_forged_sizes(tmp_path):
    blob = forge_numel(storage_blob(torch.arange(4, dtype=torch.float32)), real=4, claimed=HUGE)
    path = tmp_path / "detector.pkl"
    path.write_bytes(pickle.dumps({"w": tensor_record(blob, (4,), (1,))}))
    with pytest.raises(storage_records.OversizedRecord, match="declares"):
        tensor_unpickler.read_tensor_tree(str(path))
    with zipfile.ZipFile(tmp_path / "detector.pt", "w") as archive:  # a tensor that claims more than its record
        record = Reduce(torch._utils._rebuild_tensor_v2, ZipStorage(), 0, (HUGE,), (1,), False, OrderedDict())
        archive.writestr("archive/data.pkl", zip_data_pkl({"w": record}))
        archive.writestr("archive/data/0", b"\0" * 16)
    with pytest.raises(storage_records.OversizedRecord, match=f"{HUGE} elements"):
        tensor_unpickler.read_tensor_tree(str(tmp_path / "detector.pt"))
