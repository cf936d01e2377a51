"""dnnlib: EasyDict, open_url (path, file://, http with cache, offline error), atomic writes, construct-by-name,
range lists, the stdout/stderr Logger and the text progress bar."""

from __future__ import annotations

import http.server
import io
import os
import pathlib
import pickle
import socket
import stat
import sys
import threading

import pytest

import dnnlib
from dnnlib import util
from dnnlib.progress import ProgressBar

# ----------------------------------------------------------------------------------------------------------------


def test_easydict_attributes_and_pickle():
    d = dnnlib.EasyDict(a=1, nested={"b": 2})
    d.c = 3
    assert d["c"] == 3 and d.a == 1 and d == {"a": 1, "nested": {"b": 2}, "c": 3}
    del d.a
    assert "a" not in d
    with pytest.raises(AttributeError):
        _ = d.missing
    clone = pickle.loads(pickle.dumps(d))
    assert isinstance(clone, dnnlib.EasyDict) and clone.c == 3


def test_make_cache_dir_path(monkeypatch, tmp_path):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "c"))
    assert util.make_cache_dir_path("downloads", "x") == str(tmp_path / "c" / "downloads" / "x")
    monkeypatch.delenv("DNNLIB_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert util.make_cache_dir_path("y") == str(tmp_path / "home" / ".cache" / "dnnlib" / "y")


# ----------------------------------------------------------------------------------------------------------------
# open_url


def test_open_url_local_path_and_file_url(tmp_path):
    path = tmp_path / "with space.bin"
    path.write_bytes(b"\x00\x01payload")
    with util.open_url(str(path)) as f:
        assert f.read() == b"\x00\x01payload"
    url = path.as_uri()  # file:///.../with%20space.bin
    assert "%20" in url
    with util.open_url(url) as f:
        assert f.read() == b"\x00\x01payload"
    assert util.open_url(url, return_filename=True) == str(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        util.open_url(str(tmp_path / "absent.pkl"))
    with pytest.raises(FileNotFoundError, match="absent.pkl"):
        util.open_url((tmp_path / "absent.pkl").as_uri())


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server naming
        type(self).requests.append(self.path)
        if self.path == "/weights.pkl":
            body = b"network-bytes" * 100
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    _CountingHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _CountingHandler.requests
    server.shutdown()
    server.server_close()


def test_open_url_http_downloads_once_then_uses_the_cache(http_server, tmp_path):
    base, requests_seen = http_server
    url = base + "/weights.pkl"
    cache = tmp_path / "cache"
    with util.open_url(url, cache_dir=str(cache), verbose=False) as f:
        assert f.read() == b"network-bytes" * 100
    with util.open_url(url, cache_dir=str(cache), verbose=False) as f:
        assert f.read() == b"network-bytes" * 100
    assert requests_seen == ["/weights.pkl"]  # second open served from the cache
    cached = util.open_url(url, cache_dir=str(cache), return_filename=True, verbose=False)
    assert pathlib.Path(cached).parent == cache and cached.endswith("weights.pkl")
    assert [p.name for p in cache.iterdir()] == [os.path.basename(cached)]  # no temp files left


def test_open_url_default_cache_is_dnnlib_cache_dir(http_server, tmp_path, monkeypatch):
    base, _ = http_server
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "envcache"))
    cached = util.open_url(base + "/weights.pkl", return_filename=True, verbose=False)
    assert cached.startswith(str(tmp_path / "envcache"))


def test_open_url_http_error_names_the_url(http_server, tmp_path):
    base, _ = http_server
    with pytest.raises(IOError, match="/missing.pkl"):
        util.open_url(base + "/missing.pkl", cache_dir=str(tmp_path), num_attempts=1, verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_open_url_offline_error_names_url_and_local_file_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with socket.socket() as s:  # a port nobody listens on: connection refused, like being offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ffhq.pkl"
    with pytest.raises(IOError) as info:
        util.open_url(url, cache_dir=str(tmp_path), num_attempts=2, verbose=False)
    message = str(info.value)
    assert url in message and "local path" in message and "\n" not in message


# ----------------------------------------------------------------------------------------------------------------
# Atomic writes


def test_atomic_write_leaves_nothing_on_exception(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with util.atomic_write(str(target), "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with util.atomic_write(str(target), "w") as f:
            f.write("new")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_success_has_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with util.atomic_write(str(target), "wb") as f:
        f.write(b"abc")
    assert target.read_bytes() == b"abc"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~util.current_umask()
    util.atomic_append_line(str(target.with_name("log.txt")), "one")
    util.atomic_append_line(str(target.with_name("log.txt")), "two\n")
    assert target.with_name("log.txt").read_text() == "one\ntwo\n"


# ----------------------------------------------------------------------------------------------------------------
# Construct by name


def test_construct_class_by_name_in_project():
    import torch

    from training import dataset, networks

    assert util.get_obj_by_name("torch.optim.Adam") is torch.optim.Adam
    assert util.get_obj_by_name("training.networks.Generator") is networks.Generator
    assert util.get_obj_by_name("training.dataset.ImageFolderDataset") is dataset.ImageFolderDataset
    assert len(util.CONSTRUCTIBLE_NAMES) == 16  # 12 network classes, AugmentPipe, dataset, loss, Adam


# Callables a name read from a file reached before the registry (issue 24): appending to or truncating a chosen file,
# an HTTP request, compiling CUDA source; and any module of ours that is not a registered class.
@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "builtins.eval", "trainingx.evil.Thing",
                                  "pickle.loads", "EasyDict", "dnnlib.util.atomic_append_line", "dnnlib.util.Logger",
                                  "dnnlib.util.open_url", "torch_utils.custom_ops.get_plugin", "dnnlib.util.EasyDict",
                                  "torch.optim.SGD", "training.training_loop.training_loop", None, ["x"]])
def test_construct_class_by_name_refuses_outside_the_registry(name):
    with pytest.raises(ValueError, match="not one of the classes this project constructs by name"):
        util.construct_class_by_name(class_name=name)


def test_get_obj_by_name_refuses_before_importing(monkeypatch):
    imported = []
    monkeypatch.setattr(util.importlib, "import_module", lambda name: imported.append(name))
    with pytest.raises(ValueError):
        util.get_obj_by_name("training.planted_module.Generator")
    assert imported == []


# ----------------------------------------------------------------------------------------------------------------
# Range lists and time formatting


def test_parse_range_list():
    assert util.parse_range_list("0-3,7, 10-11") == [0, 1, 2, 3, 7, 10, 11]
    assert util.parse_range_list("5") == [5]
    assert util.parse_range_list([1, 2]) == [1, 2]
    with pytest.raises(ValueError, match="--seeds: range '9-2' is reversed"):
        util.parse_range_list("9-2")
    with pytest.raises(ValueError, match="--trunc-seeds: cannot parse 'x'"):
        util.parse_range_list("1,x", option="--trunc-seeds")
    with pytest.raises(ValueError, match="empty"):
        util.parse_range_list(" ")


@pytest.mark.parametrize("seconds,text", [(7, "7s"), (303, "5m 03s"), (4 * 3600 + 306, "4h 05m 06s"),
                                          (86400 + 2 * 3600 + 180, "1d 02h 03m")])
def test_format_time(seconds, text):
    assert util.format_time(seconds) == text


# ----------------------------------------------------------------------------------------------------------------
# Logger and progress bar


def test_logger_tees_stdout_and_stderr(tmp_path, capsys):
    log = tmp_path / "log.txt"
    with util.Logger(str(log), file_mode="w"):
        print("to stdout")
        print("to stderr", file=sys.stderr)
    print("after close")
    assert log.read_text() == "to stdout\nto stderr\n"
    captured = capsys.readouterr()
    assert "to stdout" in captured.out and "to stderr" in captured.out and "after close" in captured.out
    assert sys.stdout is not None and not isinstance(sys.stdout, util.Logger)


def test_progress_bar_lines_on_a_log_stream():
    stream = io.StringIO()
    bar = ProgressBar(total=4, label="images", stream=stream, log_interval=0.0)
    for _ in range(4):
        bar.update()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("1/4 images") and lines[-1].startswith("4/4 images (100.0%)")
    assert [line.split()[0] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]  # the last line once, not twice
    stream.truncate(0)
    stream.seek(0)
    bar = ProgressBar(total=5, label="images", stream=stream, log_interval=0.0)
    bar.set(5)
    bar.close()
    assert [line.split()[0] for line in stream.getvalue().splitlines()] == ["5/5"]
    assert all("ETA" in line for line in lines) and "\r" not in stream.getvalue()
    open_ended = ProgressBar(total=None, stream=stream)
    open_ended.update(3)
    assert open_ended.text().startswith("3 images") and "elapsed" in open_ended.text()
