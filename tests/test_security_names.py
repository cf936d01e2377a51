"""No file content names code (issue 24): the two-stage call-by-name chain, dataset options from files, the audit.

Stage 1 of the chain was a snapshot whose training_set_kwargs named any callable of ours (calc_metrics.py without
--data constructed it); stage 2 a network record naming `training.<planted module>.Generator`, which was imported
before the class was checked. Both are refused here without a file written or a module imported.
"""

from __future__ import annotations

import importlib
import io
import os
import pathlib
import pickle
import re
import sys
import types

import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import generate
import training
from dnnlib import util
from torch_utils import persistence
from training import dataset_options, network_pickle
from training.network_pickle import save_network_pkl
from training.networks import Generator
from forged_pickles import Reduce

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_G(res: int = 16) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))


def one_line_error(result) -> str:
    """The CLI failed with exactly one `Error: ...` line and no traceback; returns that line."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # click's exit, not a crash
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


# ----------------------------------------------------------------------------------------------------------------
# Stage 1: training_set_kwargs naming a callable.


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("precious\n")
    return path


def _stage1_kwargs(name: str, victim: pathlib.Path, tmp_path: pathlib.Path) -> dict:
    return {
        "dnnlib.util.atomic_append_line": dict(class_name=name, path=str(victim), line="attacker text"),
        "dnnlib.util.Logger": dict(class_name=name, file_name=str(victim), file_mode="w"),
        "dnnlib.util.open_url": dict(class_name=name, url="http://127.0.0.1:9/steal", num_attempts=1),
        "dnnlib.util.atomic_write": dict(class_name=name, path=str(tmp_path / "written.txt")),
        "torch_utils.custom_ops.get_plugin": dict(class_name=name, module_name="evil", sources=[str(victim)]),
        "os.system": dict(class_name=name, command=f"touch {tmp_path / 'written.txt'}"),
    }[name]


@pytest.mark.parametrize("name", ["dnnlib.util.atomic_append_line", "dnnlib.util.Logger", "dnnlib.util.open_url",
                                  "dnnlib.util.atomic_write", "torch_utils.custom_ops.get_plugin", "os.system"])
def test_stage1_dataset_options_naming_a_callable_are_ignored(tmp_path, victim, name, monkeypatch):
    kwargs = _stage1_kwargs(name, victim, tmp_path)
    pkl = tmp_path / "poisoned.pkl"
    save_network_pkl(str(pkl), dict(G_ema=tiny_G(), training_set_kwargs=kwargs))
    asked = []
    real_get_obj_by_name = util.get_obj_by_name
    monkeypatch.setattr(util, "get_obj_by_name", lambda name: asked.append(name) or real_get_obj_by_name(name))
    line = one_line_error(CliRunner().invoke(calc_metrics.main, [f"--network={pkl}", "--metrics=fid10_full",
                                                                 "--verbose=false"]))
    assert "poisoned.pkl: its dataset options (training_set_kwargs) are ignored" in line
    assert "is not a dataset class of this project" in line and line.endswith("give the real images with --data")
    assert victim.read_text() == "precious\n" and not (tmp_path / "written.txt").exists()
    assert asked == ["training.networks.Generator"]  # the snapshot's network; the dataset name is never looked up
    assert {p.name for p in tmp_path.iterdir()} <= {"dnnlib-cache", "poisoned.pkl", "victim.txt"}


@pytest.mark.parametrize("kwargs, reason", [
    (dict(path="d", cache_in_ram=True), "unknown dataset option(s) cache_in_ram"),
    (dict(path="d", resolution=2 ** 20), "resolution must be an integer in [4, 8192]"),
    (dict(path="d", resolution=48), "resolution must be a power of two"),
    (dict(path="d", use_labels="yes"), "use_labels must be true or false"),
    (dict(path="d", xflip=1), "xflip must be true or false"),
    (dict(path="d", max_size=-5), "max_size must be an integer in [1, 2147483647]"),
    (dict(path="d", random_seed=2 ** 40), "random_seed must be an integer"),
    (dict(path=["d"]), "path must be a non-empty string"),
    (dict(path="d\0x"), "path must be a non-empty string"),
    (dict(resolution=16), "the dataset options name no path"),
    (dict(path="d", **{"__class__": 1}), "unknown dataset option(s) __class__"),
    ("training.dataset.ImageFolderDataset", "the dataset options are a str, not a dict"),
])
def test_dataset_options_from_a_file_are_checked(kwargs, reason):
    with pytest.raises(dataset_options.DatasetOptionsError) as info:
        dataset_options.dataset_kwargs_from_file(kwargs, "snap.pkl")
    assert str(info.value).startswith("snap.pkl: its dataset options (training_set_kwargs) are ignored: ")
    assert reason in str(info.value) and "\n" not in str(info.value)


def test_dataset_options_that_check_out_are_kept_and_open_our_class(embedded_dataset_dir):
    import numpy as np

    kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=str(embedded_dataset_dir), use_labels=False,
                  max_size=np.int64(100), xflip=True, resolution=64, random_seed=3)
    checked = dataset_options.dataset_kwargs_from_file(kwargs, "snap.pkl")
    assert checked == dict(kwargs, max_size=100) and type(checked["max_size"]) is int
    dataset = dataset_options.open_dataset(checked)
    assert type(dataset).__name__ == "ImageFolderDataset" and len(dataset) == 200  # 100 images + their x-flips


def test_calc_metrics_uses_checked_options_and_names_a_missing_dataset(tmp_path):
    pkl = tmp_path / "moved.pkl"
    save_network_pkl(str(pkl), dict(G_ema=tiny_G(), training_set_kwargs=dict(
        class_name="training.dataset.ImageFolderDataset", path=str(tmp_path / "gone"), xflip=False)))
    line = one_line_error(CliRunner().invoke(calc_metrics.main, [f"--network={pkl}", "--metrics=fid10_full"]))
    assert f"the dataset it was trained on, {tmp_path / 'gone'}, is not here; give the real images with --data" in line


def test_compare_scores_fall_back_to_the_comparison_data_with_a_note():
    from scripts.compare import scores
    settings = types.SimpleNamespace(data="/data/set.zip", mirror=True)
    notes = []
    evil = dict(class_name="dnnlib.util.atomic_append_line", path="/tmp/x", line="y")
    assert scores.snapshot_dataset_kwargs(dict(training_set_kwargs=evil), settings, "run/s.pkl", notes.append) == \
        dict(path="/data/set.zip", xflip=True)
    assert len(notes) == 1 and notes[0].startswith("run/s.pkl: its dataset options (training_set_kwargs) are ignored")
    good = dict(class_name="training.dataset.ImageFolderDataset", path="/other", xflip=False)
    assert scores.snapshot_dataset_kwargs(dict(training_set_kwargs=good), settings, "s.pkl", notes.append) == good
    assert len(notes) == 1


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: a record naming a class in a module planted beside ours.

PLANTED = "planted_by_stage_one"


@pytest.fixture
def planted_module(tmp_path, monkeypatch):
    """training.<PLANTED> importable from a temp dir on the package path; importing it writes a marker file."""
    folder = tmp_path / "plant"
    folder.mkdir()
    marker = tmp_path / "marker"
    (folder / f"{PLANTED}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from training.networks import Generator\n")
    monkeypatch.setattr(training, "__path__", [*training.__path__, str(folder)])
    yield marker
    sys.modules.pop(f"training.{PLANTED}", None)


def _stage2_pickle(path: pathlib.Path) -> None:
    record = persistence.make_record(tiny_G())
    record["class_name"] = f"training.{PLANTED}.Generator"
    path.write_bytes(pickle.dumps({"G_ema": Reduce(persistence.rebuild_persistent_module, record)}))


def test_stage2_record_naming_a_planted_module_is_refused_before_import(tmp_path, planted_module):
    pkl = tmp_path / "stage2.pkl"
    _stage2_pickle(pkl)
    with pytest.raises(network_pickle.NetworkPickleError,
                       match=rf"stage2\.pkl: cannot resolve network class 'training\.{PLANTED}\.Generator': it is not "
                             r"a persistent network class of this project"):
        network_pickle.load_network_pkl(str(pkl))
    with pytest.raises(ValueError, match="not one of the classes this project constructs by name"):
        util.get_obj_by_name(f"training.{PLANTED}.Generator")
    line = one_line_error(CliRunner().invoke(generate.main, [f"--network={pkl}", "--seeds=0",
                                                             f"--outdir={tmp_path / 'out'}"]))
    assert "cannot resolve network class" in line and not (tmp_path / "out").exists()
    assert not planted_module.exists()
    importlib.import_module(f"training.{PLANTED}")  # the plant is real: importing it would have run it
    assert planted_module.exists()


def test_every_network_class_name_is_in_the_construct_by_name_registry():
    assert persistence.PERSISTENT_CLASS_NAMES <= util.CONSTRUCTIBLE_NAMES
    assert set(util.NETWORK_CLASS_NAMES) == set(persistence.PERSISTENT_CLASS_NAMES)
    for name in util.CONSTRUCTIBLE_NAMES:
        util.get_obj_by_name(name)  # every registered name resolves


def test_record_class_name_of_another_type_is_refused():
    record = persistence.make_record(tiny_G())
    record["class_name"] = ["training.networks.Generator"]
    with pytest.raises(network_pickle.NetworkPickleError, match="cannot resolve network class"):
        network_pickle.load_network_pkl(io.BytesIO(pickle.dumps(
            {"G_ema": Reduce(persistence.rebuild_persistent_module, record)})))


# ----------------------------------------------------------------------------------------------------------------
# The audit: every dynamic call in the code is listed in docs/security.md.

DYNAMIC_CALL = re.compile(r"construct_class_by_name\(|call_func_by_name\(|get_obj_by_name\(|import_module\(|"
                          r"__import__\(|allow_pickle\s*=|(?<![\w.])eval\(|(?<![\w.])exec\(|pickle\.loads?\(|"
                          r"torch\.load\(|jit\.load\(|Unpickler\)|np\.load\(")


def _files_with_dynamic_calls() -> set[str]:
    found = set()
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(("tests/", ".")) or "/." in rel:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            code = line.split("#", 1)[0]
            if DYNAMIC_CALL.search(code) and not code.lstrip().startswith(('"', "'")):
                found.add(rel)
    return found


def test_docs_security_lists_every_file_with_a_dynamic_call():
    doc = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    files = _files_with_dynamic_calls()
    assert "training/network_pickle.py" in files and "dnnlib/util.py" in files  # the scan sees what it must
    missing = sorted(f for f in files if f"`{f}" not in doc)
    assert missing == [], f"add these files' dynamic calls to the table in docs/security.md: {missing}"


def test_numbers_read_back_from_training_options_json_are_checked():
    from training.config import ConfigError
    from training.resume_plan import first_difference, inherit_transfer_settings

    opts = {}
    inherit_transfer_settings(dict(resume_kind="transfer", ada_kimg=100, ema_rampup=None), opts)
    assert opts == dict(ada_kimg=100, ema_rampup=None)
    damaged = dict(resume_kind="transfer", ada_kimg="training.evil.Thing")
    with pytest.raises(ConfigError, match=r"^training_options\.json: ada_kimg='training\.evil\.Thing' is not a number"):
        inherit_transfer_settings(damaged, {})
    assert first_difference(damaged, {}) == "training_options.json (a damaged transfer setting)"
