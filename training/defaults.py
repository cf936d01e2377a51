"""Every default of a training run, defined once, each beside the reason for its value.

CLI_DEFAULTS: what train.py uses for an option the command leaves out (click declares none of its own; the help
texts quote these). LOOP_DEFAULTS: what a training_options.json may leave out (tools, tests and runs written by
older versions), so that such options train as upstream would. The method hyper-parameters have theirs in
training/contrastive/presets.py (MethodOptions). Pure Python: no torch.
"""

from __future__ import annotations

import dnnlib

# Values the CLI and the loop share.
SNAPSHOT_TICKS = 50  # upstream's --snap: a snapshot (and grid) every 50 ticks
KIMG_PER_TICK = 4  # upstream's --tick: a status line every 4 kimg
TOTAL_KIMG = 25000  # upstream presets' duration (stylegan2, paper*: 25M images)
ADA_TARGET = 0.6  # upstream's --target: the overfitting heuristic r_t that ADA steers p towards
ADA_KIMG = 500  # upstream's ADA speed: p can move from 0 to 1 in 500 kimg
TRANSFER_ADA_KIMG = 100  # upstream, from a published network: p adapts 5x faster (it fits new data quickly)
ADA_INTERVAL = 4  # upstream: p is adjusted every 4 minibatches
AUGPIPE = "bgc"  # upstream's --augpipe: blit, geometric and colour transforms
UPSTREAM_WORKERS = 3  # upstream's DataLoader workers (devices.default_workers caps them at the cores - 1)
COMPILE_BACKEND = "inductor"  # torch.compile's own default backend

CLI_DEFAULTS = dnnlib.EasyDict(
    gpus=1,  # one process (under torchrun: WORLD_SIZE, see train.py)
    cpu_procs=False,  # --gpus=N needs N GPUs unless asked for CPU processes
    snap=SNAPSHOT_TICKS,
    metrics=None,  # upstream's fid50k_full, none on a CPU (train.parse_metrics)
    seed=0,  # upstream's
    cond=False,  # unconditional, as upstream
    subset=None,  # every image
    mirror=False,  # no x-flips, as upstream
    cfg="auto",  # upstream's: sizes from the resolution and --gpus (config.auto_cfg_spec)
    gamma=None, kimg=None, batch=None,  # the --cfg preset's
    stop_kimg=None,  # train the whole --kimg schedule
    tick=None,  # KIMG_PER_TICK (the loop's)
    aug=None,  # ada (config.validate_basic)
    p=None,  # only with --aug=fixed, which needs it
    target=None,  # ADA_TARGET
    ada_kimg=None,  # ADA_KIMG, TRANSFER_ADA_KIMG from a published network, a continued run's own
    augpipe=None,  # AUGPIPE
    resume=None,  # no resume
    resume_mode="continue",  # a run directory or 'latest' goes on in its own directory (training/resume_plan.py)
    freezed=None,  # no frozen D layers
    fp32=False, nhwc=False, allow_tf32=False, nobench=False,  # upstream's performance settings
    bf16=False, channels_last=False, compile=False, fused_adam=False,  # speed switches off: the plain behaviour
    compile_backend=None,  # COMPILE_BACKEND, and only with --compile
    method=None,  # ada (the contrastive presets' default)
)

LOOP_DEFAULTS = dict(
    G_reg_interval=4,  # StyleGAN2's lazy regularisation: path length every 4 G steps
    D_reg_interval=16,  # and R1 every 16 D steps
    augment_p=0,  # no augmentation unless ADA or --aug=fixed sets p
    ada_target=None,  # no ADA
    ada_interval=ADA_INTERVAL,
    ada_kimg=ADA_KIMG,
    total_kimg=TOTAL_KIMG,
    stop_kimg=None,  # the end of the schedule (total_kimg)
    kimg_per_tick=KIMG_PER_TICK,
    image_snapshot_ticks=SNAPSHOT_TICKS,
    network_snapshot_ticks=SNAPSHOT_TICKS,
    resume_pkl=None,  # from scratch
    cudnn_benchmark=True,  # upstream's (--nobench turns it off)
    allow_tf32=False,  # upstream's: FP32 matmuls stay FP32
    metrics=[],  # none
    method_kwargs=None,  # plain StyleGAN2-ADA
    ema_rampup=None,  # no EMA ramp-up
    ema_kimg=10,  # upstream's stylegan2 preset: G_ema half-life of 10 kimg
    batch_size=4, batch_gpu=4,  # a small CPU-sized batch for hand-written options
    random_seed=0,
    num_gpus=1,
    image_grid=None,  # upstream's grid layout
    progress_sec=60,  # a quiet loop prints a progress line at least once a minute
)
REQUIRED_KEYS = ("training_set_kwargs", "G_kwargs", "D_kwargs", "G_opt_kwargs", "D_opt_kwargs", "loss_kwargs")

# training/speed.py's switches, all off by default: default runs keep upstream's behaviour and options.
SPEED_DEFAULTS = dict(bf16=False, channels_last=False, compile=False, compile_backend=COMPILE_BACKEND, fused_adam=False)


def with_cli_defaults(options: dict) -> dnnlib.EasyDict:
    """The given options over CLI_DEFAULTS (None stands for "not given")."""
    merged = dnnlib.EasyDict(CLI_DEFAULTS)
    merged.update({key: value for key, value in options.items() if value is not None})
    return merged


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
