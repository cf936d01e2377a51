"""scripts/tune_cpu_preset.py: each variant is train.py's tiny options with exactly its overrides."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from scripts import tune_cpu_preset
from train_helpers import emoji_zip, one_torch_thread  # noqa: F401 (fixtures)

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_variants_override_only_what_they_name(emoji_zip):
    base = tune_cpu_preset.resolve_variant(str(emoji_zip), "ada", 0, "base")
    fast = tune_cpu_preset.resolve_variant(str(emoji_zip), "ada", 0, "lr2x-b16")
    wide = tune_cpu_preset.resolve_variant(str(emoji_zip), "ada", 0, "lr2x-wide")
    assert (base.G_opt_kwargs.lr, base.D_opt_kwargs.lr, base.batch_size) == (0.0025, 0.0025, 8)  # the tiny preset
    assert (fast.G_opt_kwargs.lr, fast.D_opt_kwargs.lr, fast.batch_size) == (0.005, 0.005, 16)
    assert wide.G_kwargs.synthesis_kwargs.channel_max == wide.D_kwargs.channel_max == 64
    assert base.G_kwargs.synthesis_kwargs.channel_max == 32 and base.loss_kwargs.r1_gamma == fast.loss_kwargs.r1_gamma
    assert base.run_dir is None  # nothing is written by the tuner besides its results file


def test_an_unknown_variant_is_one_line(tmp_path, emoji_zip):
    result = subprocess.run([sys.executable, "scripts/tune_cpu_preset.py", f"--data={emoji_zip}",
                             f"--out={tmp_path / 'out.jsonl'}", "--variants=base,lr9x"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "unknown variant 'lr9x'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()
