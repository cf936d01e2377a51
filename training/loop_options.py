"""What training_options.json may leave out: the training loop's own defaults (for tools, tests and older runs).

train.py always writes every key; these values are upstream's, so a hand-written or older options dict trains
as upstream would.
"""

from __future__ import annotations

import dnnlib

LOOP_DEFAULTS = dict(
    G_reg_interval=4, D_reg_interval=16, augment_p=0, ada_target=None, ada_interval=4, ada_kimg=500,
    total_kimg=25000, kimg_per_tick=4, image_snapshot_ticks=50, network_snapshot_ticks=50, resume_pkl=None,
    cudnn_benchmark=True, allow_tf32=False, metrics=[], method_kwargs=None, ema_rampup=None, ema_kimg=10,
    batch_size=4, batch_gpu=4, random_seed=0, num_gpus=1, image_grid=None, progress_sec=60,
)
REQUIRED_KEYS = ("training_set_kwargs", "G_kwargs", "D_kwargs", "G_opt_kwargs", "D_opt_kwargs", "loss_kwargs")


def with_loop_defaults(opts: dict) -> dnnlib.EasyDict:
    """`opts` over LOOP_DEFAULTS; a ValueError names a missing required key or a batch that does not split."""
    merged = dnnlib.EasyDict(LOOP_DEFAULTS)
    merged.update(opts)
    for key in REQUIRED_KEYS:
        if key not in merged:
            raise ValueError(f"training options: missing {key!r}")
    if merged.batch_size % (merged.batch_gpu * merged.num_gpus) != 0:
        raise ValueError(f"training options: batch_size {merged.batch_size} must be a multiple of "
                         f"batch_gpu x num_gpus = {merged.batch_gpu * merged.num_gpus}")
    return merged
