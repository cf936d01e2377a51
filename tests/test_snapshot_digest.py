"""Snapshots carry a content digest that loading verifies; --resume=latest falls back to the newest intact one;
a run whose losses stay non-finite for a whole tick stops with one line and keeps its last finite snapshot."""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle

import pytest
import torch

from test_network_pickle import make_D, make_G
from train_helpers import FAST, invoke, only_run_dir, resolve, snapshots
from train_helpers import emoji_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)
from training import network_pickle, preflight, snapshot_digest
from training.config import ConfigError, DatasetInfo


def _saved(tmp_path, name="snap.pkl") -> tuple[str, bytes]:
    path = str(tmp_path / name)
    network_pickle.save_network_pkl(path, dict(G_ema=make_G(), D=make_D(), training_set_kwargs=dict(path="x")))
    with open(path, "rb") as f:
        return path, f.read()


def _refusal(path: str) -> str:
    with pytest.raises(network_pickle.NetworkPickleError) as info:
        network_pickle.load_network_pkl(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


def test_a_snapshot_ends_in_the_digest_of_every_byte_before_it(tmp_path):
    path, data = _saved(tmp_path)
    payload, tail = data[:-snapshot_digest.TRAILER_LENGTH], data[-snapshot_digest.TRAILER_LENGTH:]
    assert tail == snapshot_digest.TRAILER_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    assert snapshot_digest.verify(data, path) is True
    loaded = network_pickle.load_network_pkl(path)
    assert loaded["training_set_kwargs"] == dict(path="x")
    # Older code and upstream-shaped loaders stop at the pickle's STOP opcode: the trailer is invisible to them.
    plain = pickle.Unpickler(io.BytesIO(data)).load()
    assert sorted(plain) == ["D", "G_ema", "training_set_kwargs"]


@pytest.mark.parametrize("where", ["tensor bytes", "init args", "trailer digits", "trailer marker", "last byte"])
def test_an_edited_byte_is_refused_unread_in_one_line(tmp_path, where):
    path, data = _saved(tmp_path)
    edited = bytearray(data)
    if where == "tensor bytes":  # the w_avg buffer's first float, as it sits in the pickle
        offset = bytes(data).find(make_G().mapping.w_avg.numpy().tobytes()[:8])
    elif where == "init args":  # a recorded constructor argument (a different channel_max)
        offset = bytes(data).find(b"channel_max") + len(b"channel_max") + 2
    elif where == "trailer marker":  # the file must not then pass as one without a digest
        offset = len(data) - snapshot_digest.TRAILER_LENGTH + 3
    elif where == "last byte":
        offset = len(data) - 1
    else:
        offset = len(data) - 5
    assert offset > 0
    edited[offset] ^= 0x01
    with open(path, "wb") as f:
        f.write(bytes(edited))
    assert "content digest mismatch" in _refusal(path)


def test_files_without_a_digest_still_load(tmp_path):
    """Snapshots of older versions and upstream pickles have no trailer: loaded (and bounded) as before."""
    path = str(tmp_path / "old.pkl")
    with open(path, "wb") as f:
        pickle.dump(dict(G_ema=make_G()), f, protocol=4)
    G = network_pickle.load_network_pkl(path)["G_ema"]
    torch.testing.assert_close(G.mapping.w_avg, make_G().mapping.w_avg, rtol=0, atol=0)


def test_a_truncated_snapshot_is_refused(tmp_path):
    path, data = _saved(tmp_path)
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    assert "not a readable network pickle" in _refusal(path)


# ----------------------------------------------------------------------------
# --resume=latest and a damaged newest snapshot.


def _tiny_info() -> DatasetInfo:
    return DatasetInfo(name="x", resolution=16, num_channels=3, label_dim=0, size=10)


def test_the_newest_intact_snapshot_is_used_and_named(tmp_path, capsys):
    old, _ = _saved(tmp_path, "network-snapshot-000004.pkl")
    new, data = _saved(tmp_path, "network-snapshot-000008.pkl")
    with open(new, "wb") as f:
        f.write(data[:-200] + bytes(200))  # the end of the file lost (zeros after a crash)
    pkl, loaded = preflight.newest_intact_snapshot([new, old], _tiny_info(), cond=False, option="--resume=latest")
    assert pkl == old and "G_ema" in loaded
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("--resume=latest: skipping a damaged snapshot (") and \
        err[0].endswith("resuming from network-snapshot-000004.pkl, the newest intact snapshot"), err
    assert new in err[0]


def test_no_intact_snapshot_is_one_line(tmp_path):
    paths = []
    for name in ("network-snapshot-000004.pkl", "network-snapshot-000008.pkl"):
        path, data = _saved(tmp_path, name)
        with open(path, "wb") as f:
            f.write(data[:100])
        paths.append(path)
    with pytest.raises(ConfigError) as info:
        preflight.newest_intact_snapshot(paths[::-1], _tiny_info(), cond=False, option="--resume=latest")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"--resume=latest: no intact snapshot in {tmp_path} (newest: ")


def test_resume_latest_skips_a_corrupt_newest_snapshot(tmp_path, emoji_zip, small_grid, capsys):
    outdir = tmp_path / "runs"
    args = [f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--tick=0.008", "--kimg=0.016"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(outdir)
    older, newest = snapshots(run_dir)[-2:]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the tensors
    newest.write_bytes(bytes(data))
    opts, resumed_dir = resolve(*args[:-1], "--kimg=0.032", "--resume=latest")
    assert resumed_dir == str(run_dir) and opts["resume_pkl"] == str(older) and opts["resume_kind"] == "exact"
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{newest}: content digest mismatch" in line and f"resuming from {older.name}" in line, line


def test_resume_on_a_run_dir_whose_lock_cannot_be_opened_is_one_line(tmp_path):
    """A read-only run directory (emulated: root may write anywhere, so the lock file's name is a folder)."""
    from training import run_dir as rundir

    (tmp_path / rundir.LOCK_FILE).mkdir()
    with pytest.raises(ConfigError) as info:
        rundir.check_not_in_use(str(tmp_path))
    assert str(info.value).startswith(f"{tmp_path}: cannot open its lock file .train.lock (") and \
        str(info.value).endswith("start a new run from its snapshot with --resume-mode=new")


# ----------------------------------------------------------------------------
# Non-finite losses.


def test_losses_non_finite_for_a_whole_tick_stop_the_run_and_keep_the_last_finite_snapshot(tmp_path, emoji_zip,
                                                                                          small_grid, monkeypatch):
    from torch_utils import training_stats
    from training.training_loop import Trainer

    # This run's statistics stay out of the process-wide registry of the tests that follow.
    monkeypatch.setattr(training_stats, "_counters", collections.defaultdict(dict))
    original = Trainer.next_real_batch
    steps = [0]

    def nan_after_the_first_step(self):
        images, labels = original(self)
        steps[0] += 1
        return (images if steps[0] == 1 else torch.full_like(images, float("nan"))), labels

    monkeypatch.setattr(Trainer, "next_real_batch", nan_after_the_first_step)
    outdir = tmp_path / "runs"
    result = invoke(f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--kimg=0.064")
    run_dir = only_run_dir(outdir)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    # Tick 0 is the first (finite) step and is snapshotted; tick 1 (steps 2-5) sees NaN reals in every D loss.
    assert errors == ["Error: the D losses were non-finite for the whole tick ending at kimg 0.04, so training stopped "
                      "without a snapshot (the last finite snapshot is network-snapshot-000000.008.pkl); check the "
                      "dataset's labels and images, or lower --gamma or the learning rate, then resume"], result.output
    assert [p.name for p in snapshots(run_dir)] == ["network-snapshot-000000.008.pkl"]
    assert os.path.isfile(run_dir / "log.txt")


def test_continuing_a_run_dir_that_takes_no_files_is_one_line(tmp_path, monkeypatch):
    """The write probe fails as on a read-only file system (root ignores permission bits, so it is emulated)."""
    import tempfile

    from training import resume_plan
    from training import run_dir as rundir

    run = tmp_path / "00000-x"
    run.mkdir()
    (run / rundir.OPTIONS_FILE).write_text("{}")

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(ConfigError) as info:
        resume_plan.plan_resume(str(run), "continue", str(tmp_path), {})
    assert str(info.value) == (f"--resume={run}: cannot write in {run} (Read-only file system); make the run "
                               f"directory writable, or start a new run from its snapshot with --resume-mode=new")


def test_several_damaged_snapshots_are_counted_in_the_one_line(tmp_path, capsys):
    oldest, _ = _saved(tmp_path, "network-snapshot-000004.pkl")
    damaged = []
    for name in ("network-snapshot-000008.pkl", "network-snapshot-000012.pkl"):
        path, data = _saved(tmp_path, name)
        with open(path, "wb") as f:
            f.write(data[:1000])
        damaged.append(path)
    pkl, _ = preflight.newest_intact_snapshot([*damaged[::-1], oldest], _tiny_info(), cond=False, option="--resume=x")
    err = capsys.readouterr().err.strip().splitlines()
    assert pkl == oldest and len(err) == 1 and err[0].startswith(f"--resume=x: skipping 2 damaged snapshots (newest: "
                                                                 f"{damaged[1]}: "), err


def test_no_random_one_byte_edit_of_a_snapshot_loads(tmp_path):
    """Before the digest, 263 of 600 such edits loaded silently (the review's count); now none does (100 here,
    0.4 s; 600 measured once: 0 loaded)."""
    import random

    path, data = _saved(tmp_path)
    rng = random.Random(0)
    loaded = []
    for _ in range(100):
        edited = bytearray(data)
        where = rng.randrange(len(edited))
        edited[where] = (edited[where] + rng.randrange(1, 256)) % 256  # always a different byte
        with open(path, "wb") as f:
            f.write(bytes(edited))
        try:
            network_pickle.load_network_pkl(path)
            loaded.append(where)
        except network_pickle.NetworkPickleError as error:
            assert "\n" not in str(error)
    assert loaded == []
