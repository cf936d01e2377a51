"""One test per bomb class of issue 24: tiny or sparse files that asked for gigabytes are refused in one line, with
the peak memory of the loading process under 1 GB and well under 10 s (torch_utils/load_budget.py).

All files are built here and loaded in one child process (tests/bounded_runner.py), whose VmHWM is the peak of the
loading alone; importing torch and our modules takes about 350 MB of it.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zipfile
from collections import OrderedDict

import numpy as np
import PIL.Image
import pytest
import torch

from bounded_runner import run_cases
from metrics import features
from metrics.feature_stats import FeatureStats
from torch_utils import persistence
from training import networks
from forged_pickles import Reduce, storage_blob

PEAK_LIMIT_KIB = 1024 * 1024  # 1 GiB (the bound); measured peak over all cases: 320 MB, imports included
NUMPY_MULTIARRAY = (getattr(np, "_core", None) or np.core).multiarray  # numpy 2.x or 1.x
HANG_GUARD_S = 10  # the bound; the slowest case measured 1.6 s (64 tiny networks built before refusal)


# ----------------------------------------------------------------------------
# Builders.


def legacy_file(declarations: list[tuple[str, int]], listed: list[str], payload_numel: int = 4) -> bytes:
    """A pre-zip torch.save file whose object pickle declares the given (key, numel) storages in order."""
    class Declared:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, dict(protocol_version=1001, little_endian=True)):
        pickle.dump(header, buf, protocol=2)
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.persistent_id = lambda o: ("storage", torch.FloatStorage, o.key, "cpu", o.numel) \
        if isinstance(o, Declared) else None
    pickler.dump({"w": [Declared(key, numel) for key, numel in declarations]})
    pickle.dump(listed, buf, protocol=2)
    for _ in listed:
        buf.write(payload_numel.to_bytes(8, "little") + b"\0" * (4 * payload_numel))
    return buf.getvalue()


class ZipStorage:
    """Storage "0" of a torch zip archive; written as a persistent id."""


def detector_zip(path, num_views: int) -> None:
    """A 60 KB TorchScript-like archive: many stride-0 float16 views of one element (10.9 GB once `.float()`ed)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.persistent_id = lambda o: \
        ("storage", torch.HalfStorage, "0", "cpu", 1) if isinstance(o, ZipStorage) else None
    storage = ZipStorage()
    views = {f"layers.v{i}": Reduce(torch._utils._rebuild_tensor_v2, storage, 0, (4096, 4096), (0, 0), False,
                                    OrderedDict()) for i in range(num_views)}
    pickler.dump(views)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buf.getvalue())
        archive.writestr("archive/data/0", b"\0\0")


def npz_with_header(path, key: str, shape: tuple, dtype=np.float32, data: bytes = b"") -> None:
    """An .npz whose member declares `shape` but carries only `data` (a forged header costs nothing to write)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, dict(descr=np.dtype(dtype).str, fortran_order=False, shape=shape))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{key}.npy", header.getvalue() + data)


def gzip_of_zeros(path, head: bytes, zeros: int) -> None:
    """head followed by `zeros` zero bytes, gzip-compressed in 1 MiB chunks (about 1000:1)."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(head)
        chunk = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(chunk)


def stats_cache(path, rows: int, features_: int = 8, poison: float | None = None) -> None:
    stats = FeatureStats(capture_all=True, capture_mean_cov=True)
    x = np.random.default_rng(0).normal(size=(rows, features_)).astype(np.float32)
    stats.append(x)
    if poison is not None:
        stats.raw_mean[0] = poison
    stats.save(str(path))


def build_cases(root) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """(name, loader, path) cases and the text each one-line refusal must contain."""
    cases, expected = [], {}

    def add(name, loader, path, text):
        cases.append((name, loader, str(path)))
        expected[name] = text

    def pkl(name, obj):
        path = root / f"{name}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=4))  # builtins names as Python 3 writes them
        return path

    add("bytearray_size", "network", pkl("bytearray_size", {"G_ema": Reduce(bytearray, 3 * 10 ** 9)}),
        "refusing bytearray(int)")
    laughs = []
    for _ in range(40):  # 2**40 leaves when copied; a few hundred bytes on disk
        laughs = [laughs, laughs]
    add("billion_laughs", "network", pkl("billion_laughs", {"G_ema": laughs}), "expands to more than 1000000 objects")
    meta = dict(type="class", version=6, module_src="", class_name="Generator",
                state={"_init_args": (), "_init_kwargs": {"mapping_kwargs": laughs}})
    add("billion_laughs_upstream", "network", pkl("billion_laughs_upstream",
                                                  {"G_ema": Reduce(persistence._reconstruct_persistent_obj, meta)}),
        "expands to more than")
    record = dict(persistence.make_record(networks.Generator(
        z_dim=4, c_dim=0, w_dim=4, img_resolution=4, img_channels=1, mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=8, channel_max=4))), init_args=(laughs,))
    add("billion_laughs_record", "network", pkl("billion_laughs_record",
                                                {"G_ema": Reduce(persistence.rebuild_persistent_module, record)}),
        "expands to more than")
    deep: list = []
    for _ in range(300):
        deep = [deep]
    add("deep_nesting", "network", pkl("deep_nesting", {"G_ema": deep}), "nests containers more than 200 deep")
    add("opcode_flood", "network", pkl("opcode_flood", {"G_ema": list(range(2_100_000))}),
        "more than 2000000 pickle opcodes")
    (root / "memo_index.pkl").write_bytes(b"\x80\x04}r" + (2 ** 32 - 1).to_bytes(4, "little") + b".")  # 12 bytes
    add("memo_index_bomb", "network", root / "memo_index.pkl", "names memo slot 4294967295 after only 3 opcodes")
    tiny = networks.Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=4, img_channels=1,
                              mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=8, channel_max=4))
    record = persistence.make_record(tiny)  # one record, pickled once, rebuilt 10,000 times through the memo
    add("many_records", "network", pkl("many_records", {f"n{i}": Reduce(persistence.rebuild_persistent_module, record)
                                                        for i in range(10_000)}), "holds more than 64 network records")
    add("tensor_called_with_size", "network",
        pkl("tensor_called_with_size", {"G_ema": Reduce(torch.Tensor, 10 ** 5, 10 ** 5)}),
        "refusing a direct call of torch")
    add("ndarray_called_with_size", "network",
        pkl("ndarray_called_with_size", {"G_ema": Reduce(np.ndarray, (10 ** 10,))}),
        "refusing a direct call of numpy.ndarray")
    add("empty_array_with_size", "network",
        pkl("empty_array_with_size", {"G_ema": Reduce(NUMPY_MULTIARRAY._reconstruct, np.ndarray, (10 ** 10,), b"b")}),
        "refusing an empty array of shape")

    blob = storage_blob(torch.zeros(1 << 20))  # 4 MiB storage, 300 full views of it: 315 M elements declared
    storage = Reduce(torch.storage._load_from_bytes, blob)
    views = [Reduce(torch._utils._rebuild_tensor_v2, storage, 0, (1 << 20,), (1,), False, OrderedDict())
             for _ in range(300)]
    add("views_over_budget", "network", pkl("views_over_budget", {"G_ema": views}),
        "more than the 268435456 allowed")

    (root / "duplicate_key.pt").write_bytes(legacy_file([("0", 10 ** 10), ("0", 4)], ["0"]))
    add("legacy_duplicate_key", "network", root / "duplicate_key.pt", "declared twice with different sizes")
    (root / "unlisted_key.pt").write_bytes(legacy_file([("0", 4), ("1", 10 ** 10)], ["0"]))
    add("legacy_unlisted_key", "network", root / "unlisted_key.pt", "duplicated or unbacked storages")

    detector_zip(root / "stride0_inception.pt", num_views=650)
    add("stride0_detector_views", "detector", root / "stride0_inception.pt", "more than the 160000000 allowed")

    with open(root / "sparse.pkl", "wb") as f:
        f.truncate(30 * 2 ** 30)  # 30 GB of holes: no disk used
    add("sparse_30gb_network", "network", root / "sparse.pkl", "more than the 2147483648 a file of this kind")
    add("sparse_30gb_detector", "detector", root / "sparse.pkl", "more than the 2147483648 a file of this kind")

    os.mkfifo(root / "fifo.pkl")  # reading it would block forever
    add("fifo_network", "network", root / "fifo.pkl", "is not a regular file")
    add("fifo_detector", "detector", root / "fifo.pkl", "is not a regular file")

    mnist = root / "header_bomb"
    mnist.mkdir()
    gzip_of_zeros(mnist / "train-images-idx3-ubyte.gz",
                  b"".join(v.to_bytes(4, "big") for v in (2051, 10 ** 6, 28, 28)), 0)
    gzip_of_zeros(mnist / "train-labels-idx1-ubyte.gz", b"".join(v.to_bytes(4, "big") for v in (2049, 10 ** 6)), 0)
    add("mnist_header_bomb", "dataset_tool", mnist / "train-images-idx3-ubyte.gz", "more than the 629145600")
    mnist = root / "gzip_bomb"
    mnist.mkdir()
    gzip_of_zeros(mnist / "train-images-idx3-ubyte.gz", b"".join(v.to_bytes(4, "big") for v in (2051, 100, 28, 28)),
                  200 << 20)
    gzip_of_zeros(mnist / "train-labels-idx1-ubyte.gz", b"".join(v.to_bytes(4, "big") for v in (2049, 100)), 0)
    add("mnist_gzip_bomb", "dataset_tool", mnist / "train-images-idx3-ubyte.gz", "followed by extra data")

    info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    info.size = 2 * 2 ** 30  # the header claims 2 GiB; nothing follows
    with gzip.open(root / "cifar-10-python.tar.gz", "wb") as f:
        f.write(info.tobuf())
    add("cifar_member_bomb", "dataset_tool", root / "cifar-10-python.tar.gz", "goes past the 536870912 bytes")

    with zipfile.ZipFile(root / "zip_bomb.zip", "w") as archive:
        png = io.BytesIO()
        PIL.Image.new("RGB", (4, 4)).save(png, format="PNG")
        archive.writestr("a.png", png.getvalue())
        archive.writestr("dataset.json", bytes(40 << 20), zipfile.ZIP_BZIP2)  # 40 MiB in about 50 bytes
    for loader in ("dataset_tool", "training_set"):
        add(f"zip_member_bomb_{loader}", loader, root / "zip_bomb.zip", "member dataset.json is compressed")

    npz_with_header(root / "w_huge.npz", "w", (1_460_000, 18, 512))
    add("projected_w_declares_gigabytes", "projected_w", root / "w_huge.npz", "more than the 67108864")
    np.savez(root / "w_frames.npz", w=np.zeros((1001, 4, 8), np.float32))
    add("projected_w_too_many_frames", "projected_w", root / "w_frames.npz", "with 1 <= N <= 1000")
    np.savez(root / "w_nan.npz", w=np.full((1, 4, 8), np.nan, np.float32))
    add("projected_w_nan", "projected_w", root / "w_nan.npz", "NaN or infinite")

    np.savez(root / "w_objects.npz", w=np.array([None, {"a": 1}], dtype=object))
    add("projected_w_object_array", "projected_w", root / "w_objects.npz",
        "holds Python objects, which are never loaded")
    blob = io.BytesIO()  # a storage blob whose inner torch.save names code: torch's refusal text advises trusting it
    torch.save({"x": Reduce(os.system, "true")}, blob, _use_new_zipfile_serialization=False)
    add("storage_blob_naming_code", "network",
        pkl("storage_blob_naming_code", {"G_ema": Reduce(torch.storage._load_from_bytes, blob.getvalue())}),
        "refused because loading them could run code")
    npz_with_header(root / "cache_rows.npz", "all_features", (292_968, 2048))
    add("stats_cache_292968_rows", "stats_cache", root / "cache_rows.npz", "more than the")
    stats_cache(root / "cache_extra_rows.npz", rows=20)
    add("stats_cache_wrong_rows", "stats_cache", root / "cache_extra_rows.npz", "expected 16 rows")
    stats_cache(root / "cache_nan.npz", rows=16, poison=np.nan)
    add("stats_cache_nan", "stats_cache", root / "cache_nan.npz", "NaN or infinite")
    stats_cache(root / "cache_truncated.npz", rows=16)
    data = (root / "cache_truncated.npz").read_bytes()
    (root / "cache_truncated.npz").write_bytes(data[: len(data) // 2])
    add("stats_cache_truncated", "stats_cache", root / "cache_truncated.npz", "not a readable .npz")
    return cases, expected


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("bombs")
    cases, expected = build_cases(root)
    return run_cases(cases), expected


CASE_NAMES = [
    "bytearray_size", "billion_laughs", "billion_laughs_upstream", "billion_laughs_record", "deep_nesting",
    "opcode_flood", "memo_index_bomb", "many_records", "tensor_called_with_size", "ndarray_called_with_size",
    "empty_array_with_size", "views_over_budget", "legacy_duplicate_key", "legacy_unlisted_key",
    "stride0_detector_views", "sparse_30gb_network", "sparse_30gb_detector", "fifo_network", "fifo_detector",
    "mnist_header_bomb", "mnist_gzip_bomb", "cifar_member_bomb", "zip_member_bomb_dataset_tool",
    "zip_member_bomb_training_set", "projected_w_declares_gigabytes", "projected_w_too_many_frames",
    "projected_w_nan", "projected_w_object_array", "storage_blob_naming_code", "stats_cache_292968_rows",
    "stats_cache_wrong_rows", "stats_cache_nan", "stats_cache_truncated",
]


def test_every_built_case_is_asserted(outcomes):
    assert sorted(CASE_NAMES) == sorted(outcomes[1])


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bomb_is_refused_in_one_line_with_bounded_memory(outcomes, name):
    results, expected = outcomes
    result = results[name]
    assert result["outcome"] == "refused", result
    assert expected[name] in result["message"] and "\n" not in result["message"].strip(), result
    assert not any(advice in result["message"] for advice in ("weights_only", "allow_pickle", "trust"))
    assert result["hwm_kib"] < PEAK_LIMIT_KIB, result
    assert result["seconds"] < HANG_GUARD_S, result


def test_a_poisoned_stats_cache_is_rebuilt_with_a_note(tmp_path, capsys):
    """A cache that fails verification is never used: the statistics are computed again and the file rewritten."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        PIL.Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")
    calls = []
    detector = features.Detector("toy", lambda img: calls.append(len(img)) or img.float().mean(dim=(2, 3)))
    opts = features.MetricOptions(dataset_kwargs=dict(path=str(folder)), batch_size=4, progress=False)
    honest = features.compute_dataset_stats(opts, detector, capture_mean_cov=True)
    cache = features.stats_cache_path(opts.dataset_kwargs, features.open_dataset(opts.dataset_kwargs), detector,
                                      dict(capture_mean_cov=True, max_items=None))
    assert os.path.isfile(cache) and sum(calls) == 6
    poisoned = FeatureStats.load(cache)
    poisoned.raw_cov = poisoned.raw_cov.copy()
    poisoned.raw_cov[0, 0] = np.nan  # would hang or poison sqrtm
    poisoned.save(cache)
    rebuilt = features.compute_dataset_stats(opts, detector, capture_mean_cov=True)
    assert "note: rebuilding the stats cache" in capsys.readouterr().out and sum(calls) == 12
    np.testing.assert_allclose(rebuilt.get_mean_cov()[1], honest.get_mean_cov()[1])
    assert np.isfinite(FeatureStats.load(cache, expected_items=6).raw_cov).all()  # rewritten with honest values
    with open(cache, "r+b") as f:
        f.truncate(100)  # a truncated cache was a BadZipFile traceback
    features.compute_dataset_stats(opts, detector, capture_mean_cov=True)
    assert sum(calls) == 18 and "not a readable .npz" in capsys.readouterr().out
