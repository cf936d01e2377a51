"""Run-directory files (snapshot names, newest snapshot, stale temp files) and --resume's option matching."""

from __future__ import annotations

import json

import pytest

from training import run_dir as rundir
from training.config import ConfigError
from training.resume_plan import first_difference, plan_resume


def test_snapshot_names_are_upstream_for_whole_kimg_ticks_and_exact_below():
    assert rundir.snapshot_name(4032, kimg_per_tick=4) == "network-snapshot-000004.pkl"  # upstream
    assert rundir.snapshot_name(64, kimg_per_tick=0.032) == "network-snapshot-000000.064.pkl"
    assert rundir.snapshot_name(1000, kimg_per_tick=0.5) == "network-snapshot-000001.000.pkl"
    assert rundir.fakes_grid_name(1500, kimg_per_tick=0.5) == "fakes000001.500.png"
    sub_kimg = [rundir.snapshot_name(n, 0.008) for n in range(8, 3000, 8)]
    assert len(set(sub_kimg)) == len(sub_kimg) and sorted(sub_kimg) == sub_kimg  # distinct, text order = training order
    assert [rundir.snapshot_nimg(name) for name in sub_kimg[:2]] == [8, 16]
    assert rundir.snapshot_nimg("network-snapshot-000004.pkl") == 4000
    for other in (".network-snapshot-000004.pkl.x1y2.tmp", "network-snapshot-4.pkl", "network-snapshot-000004.5.pkl"):
        assert rundir.snapshot_nimg(other) is None, other


def test_newest_snapshot_and_stale_temp_files(tmp_path):
    for name in ("network-snapshot-000000.064.pkl", "network-snapshot-000001.pkl", "network-snapshot-000000.512.pkl",
                 ".network-snapshot-000002.pkl.abc123.tmp", ".stats.jsonl.q9.tmp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.split("/")[-1] for p in rundir.list_snapshots(str(tmp_path))] == [
        "network-snapshot-000000.064.pkl", "network-snapshot-000000.512.pkl", "network-snapshot-000001.pkl"]
    removed = rundir.remove_stale_temp_files(str(tmp_path))
    assert sorted(p.split("/")[-1] for p in removed) == [".network-snapshot-000002.pkl.abc123.tmp", ".stats.jsonl.q9.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network-snapshot-000000.064.pkl",
                                                         "network-snapshot-000000.512.pkl",
                                                         "network-snapshot-000001.pkl", "notes.txt"]


def _opts(**changes) -> dict:
    opts = {"training_set_kwargs": {"path": "/data/a.zip", "resolution": 32, "xflip": False, "random_seed": 0},
            "G_kwargs": {"z_dim": 64}, "D_kwargs": {"block_kwargs": {}}, "loss_kwargs": {"r1_gamma": 0.025},
            "batch_size": 8, "batch_gpu": 8, "num_gpus": 1, "random_seed": 0, "total_kimg": 2,
            "method_kwargs": {"method": "ada", "tau": 0.1}}
    for path, value in changes.items():
        tree = opts
        *parents, leaf = path.split("__")
        for key in parents:
            tree = tree[key]
        tree[leaf] = value
    return opts


@pytest.mark.parametrize("change, option", [
    ({"training_set_kwargs__path": "/data/b.zip"}, "--data (training_set_kwargs.path: '/data/a.zip' there, "
                                                   "'/data/b.zip' here)"),
    ({"training_set_kwargs__resolution": 64}, "--data (resolution)"),
    ({"training_set_kwargs__xflip": True}, "--mirror"),
    ({"G_kwargs__z_dim": 512}, "--cfg (G_kwargs.z_dim"),
    ({"D_kwargs__block_kwargs__freeze_layers": 2}, "--freezed"),
    ({"method_kwargs__method": "fakeclr"}, "--method (method_kwargs.method"),
    ({"method_kwargs__tau": 0.2}, "--tau (method_kwargs.tau"),
    ({"loss_kwargs__r1_gamma": 1.0}, "--gamma"),
    ({"batch_size": 16}, "--batch"),
    ({"random_seed": 1}, "--seed"),
])
def test_the_first_differing_option_is_named(change, option):
    assert first_difference(_opts(), _opts(**change)).startswith(option)


def test_duration_and_other_run_options_may_change():
    assert first_difference(_opts(), _opts(total_kimg=10, kimg_per_tick=1, metrics=["kid1k_full"])) is None


def test_plan_resume_continues_the_newest_matching_run(tmp_path):
    for name, opts in (("00000-a", _opts()), ("00001-a", _opts()), ("00002-b", _opts(random_seed=5))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "training_options.json").write_text(json.dumps(opts))
    (tmp_path / "00000-a" / "network-snapshot-000000.008.pkl").write_bytes(b"\x80")
    plan = plan_resume("latest", "continue", str(tmp_path), _opts(total_kimg=5))
    assert plan.continue_dir == str(tmp_path / "00001-a") and plan.resume_pkl is None  # no snapshot yet: from zero
    plan = plan_resume(str(tmp_path / "00000-a"), "continue", str(tmp_path), _opts())
    assert plan.continue_dir == str(tmp_path / "00000-a") and plan.resume_pkl.endswith("000000.008.pkl")
    plan = plan_resume(str(tmp_path / "00000-a"), "new", str(tmp_path), _opts())
    assert plan.continue_dir is None and plan.resume_pkl.endswith("000000.008.pkl")
    plan = plan_resume("latest", "new", str(tmp_path), _opts())  # a new directory: the newest run with a snapshot
    assert plan.continue_dir is None and plan.resume_pkl == str(tmp_path / "00000-a" / "network-snapshot-000000.008.pkl")
    with pytest.raises(ConfigError, match=r"^--resume=.*00001-a: .*holds no snapshot yet.*--resume-mode=continue"):
        plan_resume(str(tmp_path / "00001-a"), "new", str(tmp_path), _opts())
    with pytest.raises(ConfigError, match=r"^--resume=latest: no run in .* made with these options \(the newest, "
                                          r"00002-b, differs in --seed"):
        plan_resume("latest", "continue", str(tmp_path), _opts(random_seed=7))
    with pytest.raises(ConfigError, match=r"the run was made with another --seed .*--resume-mode=new"):
        plan_resume(str(tmp_path / "00002-b"), "continue", str(tmp_path), _opts())


def test_runs_saved_before_newer_method_fields_still_compare_equal():
    """Options written before cl_query_view / contragan_mode existed match today's defaults (exact resume key)."""
    from training.contrastive.presets import MethodOptions, resolve_method
    from training.resume_plan import first_difference
    from training.checkpoint import options_key

    for method in ("ada", "fakeclr", "insgen"):
        today = resolve_method(method, dataset_size=169, mirror=True, batch=8).to_dict()
        older = {k: v for k, v in today.items() if k not in ("cl_query_view", "contragan_mode")}
        assert options_key({"method_kwargs": today}) == options_key({"method_kwargs": older}), method
        assert first_difference({"method_kwargs": older}, {"method_kwargs": today}) is None, method
        assert MethodOptions.from_dict(older).cl_query_view == "shared"
    # A setting that does act is still a difference; an older 2C run was the projection arrangement.
    fakeclr = resolve_method("fakeclr", dataset_size=169, mirror=True, batch=8).to_dict()
    independent = dict(fakeclr, cl_query_view="independent")
    assert "cl_query_view" in first_difference({"method_kwargs": fakeclr}, {"method_kwargs": independent})
    contragan = resolve_method("contragan", dataset_size=169, mirror=True, batch=8).to_dict()
    older_2c = {k: v for k, v in contragan.items() if k != "contragan_mode"}
    assert MethodOptions.from_dict(older_2c).contragan_mode == "projection"
    assert "contragan_mode" in first_difference({"method_kwargs": older_2c}, {"method_kwargs": contragan})


def test_a_taken_whole_kimg_name_gives_the_exact_name_and_nothing_is_overwritten(tmp_path):
    # A 6-kimg run continued with --kimg=6.2: 000006 is taken by the 6.016-kimg snapshot.
    assert rundir.free_tick_label(str(tmp_path), 6016, kimg_per_tick=4) == "000006"
    (tmp_path / "network-snapshot-000006.pkl").write_bytes(b"6016")
    (tmp_path / "fakes000006.png").write_bytes(b"grid")
    assert rundir.free_tick_label(str(tmp_path), 6208, kimg_per_tick=4) == "000006.208"
    (tmp_path / "network-snapshot-000006.208.pkl").write_bytes(b"6208")
    assert [p.split("/")[-1] for p in rundir.list_snapshots(str(tmp_path))] == [
        "network-snapshot-000006.pkl", "network-snapshot-000006.208.pkl"]
    assert rundir.newest_snapshot(str(tmp_path)).endswith("000006.208.pkl")
    # A grid alone (no snapshot that tick) also takes the name, so grid and snapshot of one tick stay paired.
    (tmp_path / "fakes000007.png").write_bytes(b"grid")
    assert rundir.free_tick_label(str(tmp_path), 7040, kimg_per_tick=4) == "000007.040"
    with pytest.raises(rundir.RunWriteError, match=r"network-snapshot-000006\.208\.pkl: a snapshot of 6208 images "
                                                   r"already exists and is kept; continue from the newest snapshot"):
        rundir.free_tick_label(str(tmp_path), 6208, kimg_per_tick=4)
    # A grid without its snapshot (a tick killed while writing, redone after the restart) is replaced.
    (tmp_path / "fakes000000.008.png").write_bytes(b"orphan")
    assert rundir.free_tick_label(str(tmp_path), 8, kimg_per_tick=0.008) == "000000.008"
    assert (tmp_path / "network-snapshot-000006.pkl").read_bytes() == b"6016"


def test_compare_scripts_read_exact_snapshot_names_with_the_run_dir_parser(monkeypatch):
    from scripts.compare import state
    from scripts.compare.scores import snapshot_kimg_from_name
    from training import network_pickle

    monkeypatch.setattr(network_pickle, "load_network_pkl", lambda path: {})  # an upstream pickle: no resume_state
    assert state.load_snapshot("r/network-snapshot-000000.064.pkl")[0] == 64  # was 64,000
    assert state.load_snapshot("r/network-snapshot-000003.pkl")[0] == 3000
    assert snapshot_kimg_from_name("r/network-snapshot-000000.064.pkl") == 0.064  # was 64 (read as whole kimg)
    assert snapshot_kimg_from_name("r/network-snapshot-000012.pkl") == 12.0


def test_a_method_change_is_blamed_on_method_not_on_its_consequences():
    from training.contrastive.presets import resolve_method

    ada = resolve_method("ada", dataset_size=169, mirror=True, batch=8).to_dict()
    fakeclr = resolve_method("fakeclr", dataset_size=169, mirror=True, batch=8).to_dict()
    assert ada["ada_linear"] != fakeclr["ada_linear"]  # sorts before "method": it used to be named
    diff = first_difference(_opts(method_kwargs=ada), _opts(method_kwargs=fakeclr))
    assert diff == "--method (method_kwargs.method: 'ada' there, 'fakeclr' here)"


def test_the_benchmarks_final_snapshot_is_the_newest_by_images(tmp_path, monkeypatch):
    from scripts.compare import bench_results

    run = tmp_path / "cell" / "00000-run"
    run.mkdir(parents=True)
    for name in ("network-snapshot-000006.pkl", "network-snapshot-000006.208.pkl", "network-snapshot-000004.pkl"):
        (run / name).write_bytes(b"x")
    results = {"runs": {"d/ada/seed0": {"local_dir": "cell", "run_dirs": ["00000-run"]}}}
    final = bench_results.final_snapshot(results, str(tmp_path), "d", "ada", 0)
    assert final == str(run / "network-snapshot-000006.208.pkl")  # text order would pick 000006.pkl
