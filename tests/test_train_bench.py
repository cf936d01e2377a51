"""benchmarks/train_bench.py on the CPU: one measured configuration, and only the bench's own lines."""

from __future__ import annotations

from benchmarks import train_bench
from train_helpers import emoji_zip  # noqa: F401 (fixture)


def test_one_configuration_is_measured_without_the_trainers_start_lines(tmp_path, emoji_zip, capsys):
    import shutil

    shutil.copy(emoji_zip, tmp_path / "emoji32.zip")  # the bench's dataset cache, already built
    result = train_bench.bench_one("tiny", "ada", "ref", "plain", steps=1, warmup=0, batch=8,
                                   cache_dir=str(tmp_path), device_name="cpu")
    assert result["steps"] == 1 and result["batch"] == 8 and result["img_per_s"] > 0
    assert "Training for" not in capsys.readouterr().out  # was "Training for 1000 kimg from 0 kimg..." per config
