"""calc_metrics.py: dataset options from the pickle or --data/--mirror, JSON lines beside the pickle, errors."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import calc_metrics
from training.network_pickle import save_network_pkl
from training.networks import Generator


def _save(path, training_set_kwargs=None, res=64):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    save_network_pkl(str(path), dict(G_ema=G, training_set_kwargs=training_set_kwargs))
    return str(path)


def _invoke(*args):
    return CliRunner().invoke(calc_metrics.main, list(args))


def test_appends_result_lines_beside_the_pickle(tmp_path, embedded_dataset_dir, toy_detector):
    pkl = _save(tmp_path / "network-snapshot-000000.pkl")
    for mirror in ("0", "1"):
        result = _invoke(f"--network={pkl}", "--metrics=fid10_full,kid10", f"--data={embedded_dataset_dir}",
                         f"--mirror={mirror}", "--batch=32", "--verbose=false")
        assert result.exit_code == 0, result.output
    fid_lines = (tmp_path / "metric-fid10_full.jsonl").read_text().splitlines()
    kid_lines = (tmp_path / "metric-kid10.jsonl").read_text().splitlines()
    assert len(fid_lines) == 2 and len(kid_lines) == 2
    row = json.loads(fid_lines[0])
    assert row["metric"] == "fid10_full" and row["snapshot_pkl"] == "network-snapshot-000000.pkl"
    assert row["num_gpus"] == 1 and set(row["results"]) == {"fid10_full"} and row["results"]["fid10_full"] > 0
    assert sum(toy_detector) >= 169 + 338  # the mirrored run reads the x-flipped set (a separate cache entry)


def test_dataset_options_come_from_the_pickle(tmp_path, embedded_dataset_dir, toy_detector):
    kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=str(embedded_dataset_dir), xflip=False)
    pkl = _save(tmp_path / "snap.pkl", training_set_kwargs=kwargs)
    result = _invoke(f"--network={pkl}", "--metrics=kid10", "--verbose=false")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "metric-kid10.jsonl").read_text())["results"]["kid10"] == pytest.approx(
        json.loads(result.output.strip().splitlines()[-1])["results"]["kid10"])


@pytest.mark.parametrize("args, message", [
    (["--metrics=fid50x"], "unknown metric 'fid50x'"),
    (["--metrics=none"], "give at least one metric"),
    ([], "give the real images with --data"),
    (["--data=/no/such/dir"], "/no/such/dir: no such dataset"),
])
def test_bad_inputs_give_clear_errors(tmp_path, args, message):
    pkl = _save(tmp_path / "snap.pkl")
    result = _invoke(f"--network={pkl}", *args)
    assert result.exit_code != 0 and message in result.output, result.output


def test_resolution_mismatch_is_rejected(tmp_path, embedded_dataset_dir):
    pkl = _save(tmp_path / "snap16.pkl", res=16)
    result = _invoke(f"--network={pkl}", f"--data={embedded_dataset_dir}", "--metrics=kid10")
    assert result.exit_code == 2 and "is 64 px but the network makes 16 px" in result.output


def test_mirror_defaults_to_the_pickles_xflip_with_data_too(tmp_path, embedded_dataset_dir, toy_detector,
                                                           monkeypatch):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))  # the reals are embedded, not read from a cache
    trained = dict(class_name="training.dataset.ImageFolderDataset", path="/elsewhere/set.zip", xflip=True)
    pkl = _save(tmp_path / "mirrored.pkl", training_set_kwargs=trained)
    result = _invoke(f"--network={pkl}", "--metrics=kid10_full", f"--data={embedded_dataset_dir}", "--verbose=false")
    assert result.exit_code == 0, result.output
    assert sum(toy_detector) == 338 + 10, toy_detector  # 169 images and their x-flips, then the 10 fakes
    assert calc_metrics.trained_with_mirror(dict(training_set_kwargs=dict(xflip="yes"))) is False  # bools only
    assert calc_metrics.trained_with_mirror(dict(training_set_kwargs=None)) is False


def test_unusable_detector_weights_are_one_line_errors(tmp_path, embedded_dataset_dir, monkeypatch):
    from metrics import detectors, runners
    from metrics.inception import InceptionV3

    pkl = _save(tmp_path / "snap.pkl")
    text = tmp_path / "bad.pkl"
    text.write_text("not weights\n")
    data = f"--data={embedded_dataset_dir}"
    for metric, option, how_to in (("kid10", "--inception", "fetch_weights.py --only=inception"), ("pr1k3", "--vgg16", "fetch_weights.py --only=vgg16")):
        result = _invoke(f"--network={pkl}", data, f"--metrics={metric}", f"{option}={text}", "--verbose=false")
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.output.startswith(f"Error: {text}: not a weight file (") and how_to in result.output
        assert len(result.output.splitlines()) == 1
    monkeypatch.setattr(detectors, "get_inception", lambda device, source=None: InceptionV3())  # no classifier
    monkeypatch.setattr(runners.detectors, "inception_source", lambda user=None: "features_only.pt")
    result = _invoke(f"--network={pkl}", data, "--metrics=is10", "--verbose=false")
    assert result.exit_code == 1 and result.output.splitlines() == [
        "Error: these Inception weights have no classifier (fid-helper's file ships features only); IS needs "
        "upstream's inception-2015-12-05.pkl: pass its path with --inception / the FAKECLR_INCEPTION environment "
        "variable"]


def test_a_dataset_zip_or_a_run_directory_as_network_is_named_for_what_it_is(tmp_path, embedded_dataset_dir):
    import zipfile

    data_zip = tmp_path / "set.zip"
    with zipfile.ZipFile(data_zip, "w") as archive:
        archive.writestr("00000/img00000000.png", b"png bytes")
        archive.writestr("dataset.json", "{}")
    run = tmp_path / "00000-run"
    run.mkdir()
    data = f"--data={embedded_dataset_dir}"
    result = _invoke(f"--network={data_zip}", data, "--verbose=false")
    assert result.exit_code == 1 and result.output.splitlines() == [
        f"Error: {data_zip}: a dataset zip (2 files such as 00000/img00000000.png), not a network pickle; give it "
        f"with --data and a network-snapshot-*.pkl with --network"]
    result = _invoke(f"--network={run}", data, "--verbose=false")
    assert result.output.splitlines() == [f"Error: {run}: a directory, not a network pickle; give a "
                                          f"network-snapshot-*.pkl file"]
    snapshot = _save(run / "network-snapshot-000004.pkl")
    result = _invoke(f"--network={run}", data, "--verbose=false")
    assert result.output.splitlines() == [f"Error: {run}: a directory, not a network pickle; give one of its "
                                          f"snapshots, e.g. {snapshot}"]
