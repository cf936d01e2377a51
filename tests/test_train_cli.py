"""train.py's command line: --dry-run, one-line errors that create nothing, run-directory numbering."""

from __future__ import annotations

import json
import shutil

from train_helpers import FAST, invoke, run_dirs
from train_helpers import emoji_zip, labelled_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)


def test_dry_run_prints_the_resolved_options_and_creates_nothing(tmp_path, emoji_zip):
    outdir = tmp_path / "runs"
    result = invoke(f"--outdir={outdir}", f"--data={emoji_zip}", "--cfg=tiny", "--kimg=0.5", "--batch=16",
                    "--method=fakeclr", "--mirror=True", "-n")
    assert result.exit_code == 0, result.output
    assert not outdir.exists()
    text = result.output
    start, end = text.index("Training options:") + len("Training options:"), text.index("Output directory:")
    opts = json.loads(text[start:end])  # the block is exactly training_options.json's content
    assert opts["batch_size"] == 16 and opts["total_kimg"] == 0.5 and opts["num_gpus"] == 1
    assert opts["method_kwargs"]["method"] == "fakeclr" and opts["method_kwargs"]["ada_linear"] is True
    assert opts["training_set_kwargs"]["xflip"] is True and opts["training_set_kwargs"]["max_size"] == 169
    assert opts["run_dir"].endswith("00000-emoji32-mirror-tiny-kimg0.5-batch16-fakeclr")
    assert f"Output directory:    {outdir / '00000-emoji32-mirror-tiny-kimg0.5-batch16-fakeclr'}" in text
    assert "Batch size:          16 images" in text and "Dry run; exiting." in text
    assert "Training for" not in text  # nothing was trained


def _bad_cases(tmp_path):
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "notes.pkl").write_text("this is not a network pickle\n")
    return [
        # (extra options, option the message must name)
        (["--batch=6"], "--batch=6"),                                   # per-GPU chunk not divisible by mbstd group 4
        (["--batch=12", "--gpus=2", "--cpu-procs=True"], "--batch=12"),  # 6 per process, group 4
        (["--batch=9", "--gpus=2", "--cpu-procs=True"], "--batch=9"),    # does not split over 2 processes
        (["--gpus=3"], "--gpus=3"),
        (["--cond=True"], "--cond"),                                    # unlabelled dataset
        (["--resume=ffhq9999"], "--resume=ffhq9999"),                   # unknown preset name
        ([f"--resume={tmp_path / 'missing.pkl'}"], "--resume="),        # missing local pickle
        ([f"--resume={tmp_path / 'emptydir'}"], "--resume="),           # run dir without snapshots
        ([f"--resume={tmp_path / 'notes.pkl'}"], "--resume="),          # a file that is no pickle at all
        (["--resume=latest"], "--resume=latest"),                       # no earlier run in --outdir
        (["--method=contragan"], "--method=contragan"),                 # needs --cond=True and labels
        (["--p=0.3"], "--p"),                                           # --p without --aug=fixed
        (["--aug=fixed"], "--aug=fixed"),                               # --aug=fixed without --p
        (["--aug=fixed", "--p=1.5"], "--p=1.5"),
        (["--aug=noaug", "--augpipe=bgc"], "--augpipe"),
        (["--aug=noaug", "--target=0.5"], "--target"),
        (["--aug=noaug", "--ada_linear=True"], "--ada_linear"),
        (["--aug=noaug", "--method=fakeclr"], "--ada_linear"),          # FakeCLR's preset ramps p linearly
        (["--metrics=fid50k_fool"], "--metrics"),
        (["--kimg=0"], "--kimg=0"),
        (["--tick=-1"], "--tick=-1"),
        (["--snap=0"], "--snap=0"),
        (["--subset=1000"], "--subset=1000"),
        (["--workers=0"], "--workers=0"),
        (["--method=fakeclr", "--tau=-1"], "--tau"),
        (["--cfg=nonsense"], "--cfg"),
        (["--grid=8"], "--grid=8"),
        *([(["--gpus=2"], "--gpus=2")] if _cuda_count() < 2 else []),  # 2 processes need 2 GPUs or --cpu-procs
    ]


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def test_bad_option_combinations_give_one_line_errors_and_create_nothing(tmp_path, emoji_zip):
    outdir = tmp_path / "runs"
    for extra, option in _bad_cases(tmp_path):
        result = invoke(f"--outdir={outdir}", f"--data={emoji_zip}", "--cfg=tiny", "--metrics=none", *extra)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code != 0, (extra, result.output)
        assert len(errors) == 1 and option in errors[0], (extra, result.output)
        assert "Traceback" not in result.output and "Training options:" not in result.output, extra
        assert not outdir.exists(), (extra, run_dirs(outdir))


def test_missing_or_unreadable_data_is_a_one_line_error(tmp_path):
    outdir = tmp_path / "runs"
    result = invoke(f"--outdir={outdir}", "--cfg=tiny")
    assert result.exit_code == 2 and "Missing option '--data'" in result.output
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    for data in (tmp_path / "missing.zip", tmp_path / "broken.zip"):
        result = invoke(f"--outdir={outdir}", f"--data={data}", "--cfg=tiny")
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 1 and len(errors) == 1 and "--data=" in errors[0], result.output
    assert not outdir.exists()


def test_contragan_and_cond_are_accepted_on_a_labelled_dataset(tmp_path, labelled_zip):
    result = invoke(f"--outdir={tmp_path}", f"--data={labelled_zip}", "--cfg=tiny", "--cond=True",
                    "--method=contragan", "-n")
    assert result.exit_code == 0, result.output
    assert '"use_labels": true' in result.output and '"cond_loss": "2c"' in result.output
    assert "-emoji32-labelled-cond-tiny-contragan" in result.output


def test_run_directories_are_numbered_and_numbers_never_reused(tmp_path, emoji_zip, small_grid):
    outdir = tmp_path / "runs"
    one_step = [f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--kimg=0.008"]
    assert invoke(*one_step).exit_code == 0
    assert invoke(*one_step, "--mirror=True", "--gamma=0.5").exit_code == 0
    assert [d.name for d in run_dirs(outdir)] == ["00000-emoji32-tiny-kimg0.008",
                                                 "00001-emoji32-mirror-tiny-gamma0.5-kimg0.008"]
    (outdir / "00007-made-by-hand").mkdir()
    (outdir / "00042-a-file-not-a-run").write_text("")  # files do not count
    shutil.rmtree(outdir / "00000-emoji32-tiny-kimg0.008")
    result = invoke(*one_step)
    assert result.exit_code == 0, result.output
    names = [d.name for d in run_dirs(outdir)]
    assert names[-1] == "00008-emoji32-tiny-kimg0.008", names
    assert not (outdir / "00000-emoji32-tiny-kimg0.008").exists()  # 00000 is not reused either


def test_home_is_expanded_and_the_start_block_names_the_device(tmp_path, emoji_zip, monkeypatch):
    import os
    import re

    from training import devices

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copy(emoji_zip, tmp_path / "emoji32.zip")
    monkeypatch.chdir(tmp_path)
    result = invoke("--outdir=~/runs", "--data=~/emoji32.zip", "--cfg=tiny", "--grid=4x2", "-n")
    assert result.exit_code == 0, result.output
    assert f"Output directory:    {tmp_path / 'runs' / '00000-emoji32-tiny'}" in result.output
    assert f'"path": "{tmp_path / "emoji32.zip"}"' in result.output and not (tmp_path / "~").exists()
    if _cuda_count() == 0:
        assert re.search(r"^Device: +CPU, 1 thread$", result.output, re.MULTILINE), result.output  # one_torch_thread
        assert "Note: no metrics by default on a CPU (fid50k_full would take about" in result.output
        assert '"metrics": []' in result.output
    cores = len(os.sched_getaffinity(0))
    assert f'"num_workers": {max(1, min(3, cores - 1))}' in result.output  # never more workers than spare cores
    assert devices.default_workers() == max(1, min(3, cores - 1))
    assert '"image_grid": [\n    4,\n    2\n  ]' in result.output

    result = invoke("--outdir=~/runs", "--data=~/emoji32.zip", "--cfg=tiny", "--gpus=2", "--cpu-procs=True", "-n")
    assert result.exit_code == 0, result.output
    assert re.search(r"^Device: +CPU, 2 processes x \d+ threads?$", result.output, re.MULTILINE), result.output


def test_an_unreachable_resume_url_or_preset_is_one_line_before_any_run_dir(tmp_path, emoji_zip, monkeypatch):
    from training.config import RESUME_SPECS

    refused = "http://127.0.0.1:9/ffhq-res256.pkl"  # port 9 (discard) is closed: refused at once, as offline
    monkeypatch.setitem(RESUME_SPECS, "ffhq256", refused)
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))  # nothing cached
    outdir = tmp_path / "runs"
    for resume in ("ffhq256", refused):
        for dry in ([], ["-n"]):
            result = invoke(f"--outdir={outdir}", f"--data={emoji_zip}", "--cfg=tiny", "--metrics=none",
                            f"--resume={resume}", *dry)
            errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
            assert result.exit_code == 1 and "Traceback" not in result.output, result.output
            assert errors == [f"Error: --resume={resume}: cannot download {refused} (ConnectionError); on a machine "
                              f"without network, download it elsewhere and give its local path with --resume=PATH"]
            assert not outdir.exists()


def test_too_many_gpus_is_the_only_line_and_a_cpu_run_counts_processes(tmp_path, emoji_zip):
    if _cuda_count() >= 2:
        return
    result = invoke(f"--outdir={tmp_path}", f"--data={emoji_zip}", "--cfg=tiny", "--method=fakeclr", "--gpus=2")
    assert result.exit_code == 1 and result.output.splitlines() == [
        f"Error: --gpus=2: this machine has {_cuda_count()} GPU(s); use --gpus=1, or --cpu-procs=True to run 2 "
        f"CPU processes"]
    result = invoke(f"--outdir={tmp_path}", f"--data={emoji_zip}", "--cfg=tiny", "--metrics=none", "-n")
    if _cuda_count() == 0:
        assert "Processes:           1\nDevice:              CPU" in result.output and "Number of GPUs" not in result.output


def test_fqs_help_states_the_default_the_code_uses():
    from training.contrastive.presets import default_queue_schedule

    text = " ".join(invoke("--help").output.split())
    assert "FakeCLR max(5% of the data x2 with --mirror, 4 x --batch)" in text
    assert default_queue_schedule(dataset_size=100, mirror=True, batch=64)[0] == 256  # 4 x batch beats 5 % x 2 = 10
