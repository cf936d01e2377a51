"""One-line errors at the CLI boundary of generate.py and calc_metrics.py; `~` in paths; one feature pass.

Every bad input gives exactly one line on stderr, `Error: <file>: <what is wrong>; <how to fix>`, a non-zero
exit, no traceback and nothing half-written (issue 17, items 5 and 10).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import generate
from dnnlib import cli_errors
from metrics import metric_main
from training.network_pickle import NetworkPickleError, save_network_pkl
from training.networks import Generator
from forged_pickles import Reduce


def save_generator(path, res=64):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    save_network_pkl(str(path), dict(G_ema=G, training_set_kwargs=None))
    return str(path)


@pytest.fixture(scope="module")
def good_pkl(tmp_path_factory):
    return save_generator(tmp_path_factory.mktemp("nets") / "net.pkl")


@pytest.fixture
def bad_pickles(tmp_path):
    """name -> (path, text the one line must contain)."""
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": Reduce(os.system, f"touch {tmp_path / 'pwned'}")}))
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"this is no pickle")
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(pickle.dumps({"G_ema": Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16,
                                                           img_channels=3, mapping_kwargs=dict(num_layers=2),
                                                           synthesis_kwargs=dict(channel_base=64, channel_max=8))})[:-200])
    return {
        "refused": (evil, "evil.pkl: refusing to load global"),
        "broken": (junk, "junk.pkl: not a readable network pickle"),
        "truncated": (truncated, "truncated.pkl: "),
    }


def one_error_line(result) -> str:
    """The single stderr line of a failed run (and no traceback anywhere)."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (NetworkPickleError, OSError))
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "; " in lines[0]  # what is wrong; how to fix
    return lines[0]


def run(main, *args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


# ----------------------------------------------------------------------------
# Bad pickles.

@pytest.mark.parametrize("kind", ["refused", "broken", "truncated"])
def test_bad_pickles_give_one_line_in_generate_and_calc_metrics(tmp_path, bad_pickles, kind, embedded_dataset_dir):
    path, expected = bad_pickles[kind]
    out = tmp_path / "out"
    line = one_error_line(run(generate.main, f"--network={path}", "--seeds=0", f"--outdir={out}"))
    assert expected in line and "weights_only" not in line
    line = one_error_line(run(calc_metrics.main, f"--network={path}", "--metrics=kid10", f"--data={embedded_dataset_dir}"))
    assert expected in line
    assert not out.exists() and not (tmp_path / "pwned").exists()


def test_debug_switch_shows_the_original_exception(bad_pickles, tmp_path):
    path, _ = bad_pickles["broken"]
    result = run(generate.main, f"--network={path}", "--seeds=0", f"--outdir={tmp_path / 'o'}",
                 env={cli_errors.DEBUG_ENV: "1"})
    assert result.exit_code != 0 and isinstance(result.exception, NetworkPickleError)


def test_missing_network_is_a_usage_error_on_one_line(tmp_path):
    result = run(calc_metrics.main, f"--network={tmp_path / 'nope.pkl'}", "--metrics=kid10")
    line = one_error_line(result)
    assert result.exit_code == 2 and line.startswith("Error: --network=") and "nope.pkl: no such network pickle" in line


# ----------------------------------------------------------------------------
# Datasets and destinations.

def test_unreadable_dataset_names_the_file(tmp_path, good_pkl):
    not_a_zip = tmp_path / "data.zip"
    not_a_zip.write_bytes(b"not a zip")
    line = one_error_line(run(calc_metrics.main, f"--network={good_pkl}", "--metrics=kid10", f"--data={not_a_zip}"))
    assert f"{not_a_zip}: not a zip archive" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_error_line(run(calc_metrics.main, f"--network={good_pkl}", "--metrics=kid10", f"--data={empty}"))
    assert f"{empty}: no image files found" in line


def test_unwritable_outdir_gives_one_line(tmp_path, good_pkl):
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    line = one_error_line(run(generate.main, f"--network={good_pkl}", "--seeds=0", f"--outdir={blocker / 'out'}"))
    assert str(blocker / "out") in line and "choose another path" in line


def test_full_disk_names_the_file_and_leaves_no_partial_png(tmp_path, good_pkl, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    out = tmp_path / "out"
    line = one_error_line(run(generate.main, f"--network={good_pkl}", "--seeds=0,1", f"--outdir={out}"))
    assert f"{out / 'seed0000.png'}: no space left on device; free some disk space" in line
    assert os.listdir(out) == []  # the temp file is gone and no PNG is half-written


def test_malformed_labels_in_the_dataset_are_named(tmp_path, embedded_dataset_dir):
    data = tmp_path / "data"
    shutil.copytree(embedded_dataset_dir, data)
    names = sorted(p.name for p in data.glob("*.png"))
    labels = [[name, [0.0, 1.0] if i % 2 else [1.0]] for i, name in enumerate(names)]
    (data / "dataset.json").write_text(json.dumps({"labels": labels}))
    kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=str(data), use_labels=True)
    pkl = tmp_path / "cond.pkl"
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=64, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8))
    save_network_pkl(str(pkl), dict(G_ema=G, training_set_kwargs=kwargs))
    line = one_error_line(run(calc_metrics.main, f"--network={pkl}", "--metrics=kid10"))
    assert f"{data}/dataset.json: label vectors have different lengths" in line


# ----------------------------------------------------------------------------
# ~ in paths.

def test_tilde_expands_in_network_outdir_and_data(tmp_path, good_pkl, embedded_dataset_dir, monkeypatch, toy_detector):
    monkeypatch.setenv("HOME", str(tmp_path))
    os.symlink(good_pkl, tmp_path / "net.pkl")
    os.symlink(embedded_dataset_dir, tmp_path / "data")
    result = run(generate.main, "--network=~/net.pkl", "--seeds=3", "--outdir=~/gen")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gen" / "seed0003.png").is_file() and not os.path.exists("~")
    result = run(calc_metrics.main, "--network=~/net.pkl", "--metrics=kid10", "--data=~/data", "--verbose=false")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["results"]["kid10"] > -1


# ----------------------------------------------------------------------------
# One feature pass for FID and KID.

def test_fid_and_kid_in_one_call_extract_features_once(tmp_path, good_pkl, embedded_dataset_dir, toy_detector):
    result = run(calc_metrics.main, f"--network={good_pkl}", "--metrics=fid10_full,kid10_full",
                 f"--data={embedded_dataset_dir}", "--batch=64", "--verbose=false")
    assert result.exit_code == 0, result.output
    assert sum(toy_detector) == 169 + 10  # the real set once and 10 fakes once (twice each before)
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [row["metric"] for row in rows] == ["fid10_full", "kid10_full"]


def test_shared_pass_gives_the_values_of_separate_calls(good_pkl, embedded_dataset_dir, toy_detector):
    from training.network_pickle import load_network_pkl
    G = load_network_pkl(good_pkl)["G_ema"]
    data = dict(path=str(embedded_dataset_dir))
    np.random.seed(7)
    fid_alone = metric_main.calc_metric("fid20_full", G, data, cache=False).results.fid20_full
    separate_calls = sum(toy_detector)
    del toy_detector[:]
    np.random.seed(7)
    shared = list(metric_main.calc_metrics(["fid20_full", "kid20_full", "fid10_full"], G, data, cache=False))
    assert shared[0].results.fid20_full == pytest.approx(fid_alone, rel=1e-6)
    assert separate_calls == 169 + 20 and sum(toy_detector) == 169 + 20 + 10  # fid10 needs its own 10 fakes


def test_full_disk_in_calc_metrics_names_the_file(tmp_path, embedded_dataset_dir, toy_detector, monkeypatch):
    pkl = save_generator(tmp_path / "net.pkl")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    line = one_error_line(run(calc_metrics.main, f"--network={pkl}", "--metrics=kid10", f"--data={embedded_dataset_dir}",
                              "--verbose=false"))
    assert ".npz: no space left on device; free some disk space" in line  # the real-statistics cache, first to write
    assert not (tmp_path / "metric-kid10.jsonl").exists()
