"""Hostile or broken input files give one line naming the file and the fix, never a traceback: a projector
target whose header claims 50000x50000 pixels, forged --projected-w files, a corrupt results.json, a CIFAR
tarball whose batch is a symbolic link."""

from __future__ import annotations

import struct
import tarfile
import zlib

import click
import numpy as np
import pytest

from training import latent_io

NUM_WS, W_DIM = 6, 8


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height RGB pixels, then IEND: 57 bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_target_is_one_line(tmp_path):
    target = tmp_path / "bomb.png"
    target.write_bytes(_png_header_only(50000, 50000))
    with pytest.raises(click.ClickException) as info:
        latent_io.load_target_image(str(target), resolution=16, channels=3)
    assert info.value.message == (f"--target={target}: the image is too large to decode safely (over 178,956,970 "
                                  f"pixels); give a smaller PNG or JPEG")


def test_a_fifo_target_is_refused_without_blocking(tmp_path):
    import os

    target = tmp_path / "pipe.png"
    os.mkfifo(target)
    with pytest.raises(click.ClickException, match="not a regular file"):
        latent_io.load_target_image(str(target), resolution=16, channels=3)


def _npz(path, **arrays) -> str:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return str(path)


def _raw(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _npy(path, array) -> str:
    with open(path, "wb") as f:  # np.save(path) would add ".npy" to the name
        np.save(f, array)
    return str(path)


FORGED_W = [  # (how the file is made, what the one line says)
    (lambda p: _raw(p, b""), "not a readable .npz file (empty, truncated or another format)"),
    (lambda p: _raw(p, b"PK\x03\x04 truncated zip"), "not a readable .npz file (empty, truncated or another format)"),
    (lambda p: _npz(p, w=np.array([["a", "b"]] * 6 * 8).reshape(1, NUM_WS, W_DIM, 2)[..., 0]),
     "'w' holds <U1 values, not floating-point numbers"),
    (lambda p: _npz(p, w=np.array([object()], dtype=object)), "array 'w' holds Python objects, which are never loaded"),
    (lambda p: _npz(p, v=np.zeros(3)), "no array 'w' in it (it holds v)"),
    (lambda p: _npz(p, w=np.zeros((0, NUM_WS, W_DIM), np.float32)), "'w' holds no latent (N is 0)"),
    (lambda p: _npz(p, w=np.zeros((2, NUM_WS, 3), np.float32)), "array 'w' has shape [2, 6, 3]: this network needs [N, 6, 8] with 1 <= N <= 1000"),
    (lambda p: _npz(p, w=np.full((1, NUM_WS, W_DIM), np.nan, np.float32)), f"{NUM_WS * W_DIM} of {NUM_WS * W_DIM} values are NaN or infinite"),
    (lambda p: _npy(p, np.zeros((1, NUM_WS, W_DIM))), "a bare array, not an .npz archive"),
]


@pytest.mark.parametrize("make, words", FORGED_W)
def test_forged_projected_w_files_are_one_line(tmp_path, make, words):
    path = make(tmp_path / "w.npz")
    with pytest.raises(click.BadParameter) as info:
        latent_io.read_projected_w(path, NUM_WS, W_DIM)
    message = info.value.format_message()
    # The bounded reader's refusals (shape from the header, objects) end with its own fix; the rest say what to give.
    assert "\n" not in message and message.startswith(f"Invalid value for --projected-w: {path}: {words}; "), message
    assert "allow_pickle" not in message  # never advise loading it unsafely


def test_a_good_projected_w_is_read_as_float32(tmp_path):
    ws = np.random.RandomState(0).randn(2, NUM_WS, W_DIM)  # float64 in the file
    w = latent_io.read_projected_w(_npz(tmp_path / "w.npz", w=ws), NUM_WS, W_DIM)
    assert w.dtype.is_floating_point and w.dtype.itemsize == 4 and np.allclose(w.numpy(), ws, atol=1e-6)


# ----------------------------------------------------------------------------


CORRUPT_RESULTS = [
    ('{"methods": {"ada": ', "not valid JSON"),
    ("[1, 2]", "holds a JSON list, not an object"),
    ('{"methods": [], "runs": []}', "entry is malformed"),
    ('{"methods": {"ada": 3}, "runs": {"x": 3}}', "entry is malformed"),
    ('{"settings": 7}', "its 'settings' entry is not an object"),
]


@pytest.mark.parametrize("content, words", CORRUPT_RESULTS)
def test_a_corrupt_results_json_is_one_line_in_compare_methods(tmp_path, content, words):
    import types

    from scripts.compare import bench_results, state
    from scripts.compare.errors import HarnessError

    path = tmp_path / "results.json"
    path.write_text(content)
    for load in (lambda: state.load_state(types.SimpleNamespace(outdir=str(tmp_path))),
                 lambda: bench_results.load(str(path), "cpu-bench")):
        with pytest.raises(HarnessError) as info:
            load()
        assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")
        assert words in str(info.value), info.value


def test_a_cifar_batch_that_is_a_symlink_is_one_line(tmp_path):
    from click.testing import CliRunner

    import dataset_tool

    src = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type, info.linkname = tarfile.SYMTYPE, "/nowhere/data_batch_9"
        tar.addfile(info)
    dest = tmp_path / "out.zip"
    result = CliRunner().invoke(dataset_tool.main, [f"--source={src}", f"--dest={dest}"])
    assert result.exit_code == 1 and not dest.exists(), result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: --source {src}: cifar-10-batches-py/data_batch_1 in the tarball is not a regular file (a link or "
        f"special file); use the original cifar-10-python.tar.gz")
