"""Base-config presets and the translation of train.py options into training-loop options.

Everything here is pure Python (no torch): the CLI resolves and validates the whole
configuration, prints it for --dry-run, and only then creates a run directory.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Optional

from dnnlib import EasyDict
from training import ada_options, checkpoint
from training.defaults import ADA_TARGET, AUGPIPE, with_cli_defaults

# ----------------------------------------------------------------------------
# Base-config presets (upstream's --cfg table). `tiny` is ours: a CPU-sized network for the demo, tests and smoke runs.


@dataclasses.dataclass(frozen=True)
class CfgSpec:
    ref_gpus: int  # the GPU count the preset was tuned for (batch_gpu = batch / ref_gpus)
    kimg: int  # training duration
    batch: int  # global minibatch
    mbstd_group: int  # D's minibatch-standard-deviation group size
    channel_scale: float  # network width: channel_base = channel_scale x 32768 (upstream's "fmaps")
    lrate: float  # Adam learning rate of G and D
    gamma: float  # R1 weight
    ema: float  # G_ema half-life in kimg
    ramp: Optional[float]  # G_ema ramp-up (fraction of the images seen), None: none
    mapping_layers: int  # layers of G's mapping network
    channel_max: int = 512
    zdim: int = 512
    num_fp16_res: int = 4
    conv_clamp: Optional[int] = 256


CFG_SPECS: dict[str, CfgSpec] = {
    "stylegan2": CfgSpec(ref_gpus=8, kimg=25000, batch=32, mbstd_group=4, channel_scale=1, lrate=0.002, gamma=10,
        ema=10, ramp=None, mapping_layers=8),
    "paper256": CfgSpec(ref_gpus=8, kimg=25000, batch=64, mbstd_group=8, channel_scale=0.5, lrate=0.0025, gamma=1,
        ema=20, ramp=None, mapping_layers=8),
    "paper512": CfgSpec(ref_gpus=8, kimg=25000, batch=64, mbstd_group=8, channel_scale=1, lrate=0.0025, gamma=0.5,
        ema=20, ramp=None, mapping_layers=8),
    "paper1024": CfgSpec(ref_gpus=8, kimg=25000, batch=32, mbstd_group=4, channel_scale=1, lrate=0.002, gamma=2,
        ema=10, ramp=None, mapping_layers=8),
    "cifar": CfgSpec(ref_gpus=2, kimg=100000, batch=64, mbstd_group=32, channel_scale=1, lrate=0.0025, gamma=0.01,
        ema=500, ramp=0.05, mapping_layers=2),
    # CPU-sized (ours): 32 channels everywhere, 64-d latents, 2 mapping layers, FP32, small batch.
    "tiny": CfgSpec(ref_gpus=1, kimg=2, batch=8, mbstd_group=4, channel_scale=0.125, lrate=0.0025, gamma=0.025,
        ema=1, ramp=0.05, mapping_layers=2, channel_max=32, zdim=64,
        num_fp16_res=0, conv_clamp=None),
}
CFG_NAMES = ["auto", *CFG_SPECS]


def auto_cfg_spec(gpus: int, res: int) -> CfgSpec:
    """Upstream's `auto` formulas: the batch from the resolution and GPU count, the rest from the batch."""
    batch = max(min(gpus * min(4096 // res, 32), 64), gpus)
    return CfgSpec(
        ref_gpus=gpus, kimg=25000, batch=batch, mbstd_group=min(batch // gpus, 4),
        channel_scale=1 if res >= 512 else 0.5, lrate=0.002 if res >= 1024 else 0.0025,
        gamma=0.0002 * (res ** 2) / batch, ema=batch * 10 / 32, ramp=0.05, mapping_layers=2,
    )


def resolve_cfg_spec(cfg: str, gpus: int, res: int) -> CfgSpec:
    if cfg == "auto":
        return auto_cfg_spec(gpus, res)
    if cfg not in CFG_SPECS:
        raise ConfigError(f"--cfg={cfg}: unknown preset; choose one of {', '.join(CFG_NAMES)}")
    return CFG_SPECS[cfg]


# ----------------------------------------------------------------------------
# Augmentation pipelines and transfer-learning sources (upstream's --augpipe and --resume names).

AUGPIPE_NAMES = ["blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn", "bgcfnc"]

_TRANSFER_CDN = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
RESUME_SPECS = {
    "ffhq256": _TRANSFER_CDN + "ffhq-res256-mirror-paper256-noaug.pkl",
    "ffhq512": _TRANSFER_CDN + "ffhq-res512-mirror-stylegan2-noaug.pkl",
    "ffhq1024": _TRANSFER_CDN + "ffhq-res1024-mirror-stylegan2-noaug.pkl",
    "celebahq256": _TRANSFER_CDN + "celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl",
    "lsundog256": _TRANSFER_CDN + "lsundog-res256-paper256-kimg100000-noaug.pkl",
}


class ConfigError(ValueError):
    """A bad option or option combination; the message is one line naming the option and the fix."""


# ----------------------------------------------------------------------------
# Run directories: upstream's `<id>-<description>` names.


def run_description(cli: EasyDict, dataset_name: str, spec_name: str) -> str:
    """`<data>[-cond][-subsetN][-mirror]-<cfg>[...]`: only explicitly given options appear."""
    parts = [dataset_name]
    if cli.cond:
        parts.append("cond")
    if cli.subset is not None:
        parts.append(f"subset{cli.subset}")
    if cli.mirror:
        parts.append("mirror")
    parts.append(spec_name)
    if cli.gamma is not None:
        parts.append(f"gamma{cli.gamma:g}")
    if cli.kimg is not None:
        parts.append(f"kimg{cli.kimg:g}")
    if cli.batch is not None:
        parts.append(f"batch{cli.batch}")
    if cli.aug is not None:
        parts.append(cli.aug)
    if cli.p is not None:
        parts.append(f"p{cli.p:g}")
    if cli.target is not None:
        parts.append(f"target{cli.target:g}")
    if cli.get("ada_kimg") is not None:
        parts.append(f"adakimg{cli.ada_kimg:g}")
    if cli.augpipe is not None:
        parts.append(cli.augpipe)
    if cli.resume is not None:
        if cli.resume == "noresume":
            parts.append("noresume")
        elif cli.resume in RESUME_SPECS:
            parts.append(f"resume{cli.resume}")
        else:
            parts.append("resumecustom")
    if cli.freezed is not None:
        parts.append(f"freezed{cli.freezed}")
    if cli.get("method") is not None:
        parts.append(cli.method)
    elif cli.get("ada_linear"):
        parts.append("adalinear")
    return "-".join(parts)


def next_run_dir(outdir: str, desc: str) -> str:
    """`<outdir>/<id:05d>-<desc>` with id one above the largest existing numeric prefix."""
    ids = []
    if os.path.isdir(outdir):
        for name in os.listdir(outdir):
            match = re.match(r"^\d+", name)
            if match and os.path.isdir(os.path.join(outdir, name)):
                ids.append(int(match.group()))
    run_id = max(ids, default=-1) + 1
    return os.path.join(outdir, f"{run_id:05d}-{desc}")


# ----------------------------------------------------------------------------
# Option translation.

def with_defaults(options: dict[str, Any]) -> EasyDict:
    """The given options over train.py's defaults (training/defaults.py CLI_DEFAULTS)."""
    return with_cli_defaults(options)


def _set_stop(opts: EasyDict, stop_kimg: float) -> None:
    """--stop-kimg ends this process early; schedules over --kimg (ADA-Linear's p, FakeCLR's queue) are unchanged."""
    if stop_kimg > opts.total_kimg:
        raise ConfigError(f"--stop-kimg={stop_kimg:g} is past the end of the schedule (--kimg={opts.total_kimg:g}); "
                          f"give a smaller --stop-kimg or a larger --kimg")
    if stop_kimg < opts.total_kimg:  # at the end it is the plain run, with the plain options file
        opts.stop_kimg = stop_kimg


def validate_basic(cli: EasyDict) -> None:
    """Checks that need no dataset."""
    if cli.gpus < 1 or (cli.gpus & (cli.gpus - 1)) != 0:
        raise ConfigError(f"--gpus={cli.gpus}: must be a power of two (1, 2, 4, 8, ...)")
    if cli.snap < 1:
        raise ConfigError(f"--snap={cli.snap}: must be at least 1")
    if cli.gamma is not None and cli.gamma < 0:
        raise ConfigError(f"--gamma={cli.gamma}: must be >= 0")
    if cli.kimg is not None and cli.kimg <= 0:
        raise ConfigError(f"--kimg={cli.kimg:g}: must be positive (fractions such as 0.5 are fine)")
    if cli.get("tick") is not None and cli.tick <= 0:
        raise ConfigError(f"--tick={cli.tick:g}: must be positive (kimg per tick)")
    if cli.get("stop_kimg") is not None and cli.stop_kimg <= 0:
        raise ConfigError(f"--stop-kimg={cli.stop_kimg:g}: must be positive (a kimg of the --kimg schedule)")
    if cli.batch is not None and (cli.batch < 1 or cli.batch % cli.gpus != 0):
        raise ConfigError(f"--batch={cli.batch}: must be a positive multiple of --gpus={cli.gpus}")
    if cli.workers < 1:
        raise ConfigError(f"--workers={cli.workers}: must be at least 1")
    if cli.freezed is not None and cli.freezed < 0:
        raise ConfigError(f"--freezed={cli.freezed}: must be >= 0")
    aug = cli.aug or "ada"
    if aug not in ("ada", "noaug", "fixed"):
        raise ConfigError(f"--aug={aug}: choose ada, noaug or fixed")
    if cli.p is not None and aug != "fixed":
        raise ConfigError("--p can only be given with --aug=fixed")
    if aug == "fixed" and cli.p is None:
        raise ConfigError("--aug=fixed needs --p=<probability in [0,1]>")
    if cli.p is not None and not 0 <= cli.p <= 1:
        raise ConfigError(f"--p={cli.p}: must lie in [0, 1]")
    if cli.target is not None and aug != "ada":
        raise ConfigError("--target can only be given with --aug=ada")
    if cli.target is not None:
        ada_options.check_target(cli.target)
    if cli.get("ada_kimg") is not None and aug != "ada":
        raise ConfigError(f"--ada-kimg can only be given with --aug=ada (got --aug={aug}); drop --ada-kimg")
    if cli.get("ada_kimg") is not None:
        ada_options.check_ada_kimg(cli.ada_kimg)
    if cli.augpipe is not None and aug == "noaug":
        raise ConfigError("--augpipe cannot be combined with --aug=noaug")
    if cli.augpipe is not None and cli.augpipe not in AUGPIPE_NAMES:
        raise ConfigError(f"--augpipe={cli.augpipe}: choose one of {', '.join(AUGPIPE_NAMES)}")
    if cli.resume is not None and cli.resume != "noresume" and cli.resume not in RESUME_SPECS and cli.resume != "latest":
        if "://" not in cli.resume and not os.path.exists(cli.resume):
            raise ConfigError(
                f"--resume={cli.resume}: not a known preset ({', '.join(RESUME_SPECS)}, latest), an existing pickle/run "
                f"directory, or a URL"
            )


@dataclasses.dataclass
class DatasetInfo:
    name: str
    resolution: int
    num_channels: int
    label_dim: int
    size: int  # number of images before mirroring and subsetting


MAX_RESOLUTION = 8192  # the largest image side the networks are built for


def _check_cfg_fits_resolution(cli: EasyDict, spec_name: str, channel_base: int, resolution: int) -> None:
    """A layer at resolution r has channel_base // r channels: none at all would divide by zero deep in the
    network's construction, after the run directory exists."""
    if resolution > MAX_RESOLUTION:
        raise ConfigError(f"--data={cli.data}: images are {resolution}x{resolution}, larger than the {MAX_RESOLUTION}x"
                          f"{MAX_RESOLUTION} the networks support; rebuild it with dataset_tool.py --resolution")
    if channel_base // resolution < 1:
        raise ConfigError(f"--cfg={spec_name}: its networks have no channels left at {resolution}x{resolution} "
                          f"(channel base {channel_base}); use --cfg=auto, or a dataset of at most {channel_base}x"
                          f"{channel_base} (dataset_tool.py --resolution)")


def build_training_options(cli: EasyDict, data: DatasetInfo, metrics: list[str]) -> tuple[EasyDict, str]:
    """Translate CLI options into the training-loop kwargs (the content of training_options.json)."""
    if cli.cond and data.label_dim == 0:
        raise ConfigError(f"--cond=True: dataset {cli.data} has no labels (dataset.json); drop --cond or add labels")
    if cli.subset is not None and not 1 <= cli.subset <= data.size:
        raise ConfigError(f"--subset={cli.subset}: must lie between 1 and the dataset size {data.size}")

    spec = resolve_cfg_spec(cli.cfg, cli.gpus, data.resolution)
    spec_name = f"auto{cli.gpus}" if cli.cfg == "auto" else cli.cfg
    opts = EasyDict(num_gpus=cli.gpus, image_snapshot_ticks=cli.snap, network_snapshot_ticks=cli.snap,
                 metrics=metrics, random_seed=cli.seed)
    opts.training_set_kwargs = EasyDict(
        class_name="training.dataset.ImageFolderDataset", path=os.path.abspath(cli.data), use_labels=bool(cli.cond),
        max_size=cli.subset if cli.subset is not None else data.size, xflip=bool(cli.mirror),
        resolution=data.resolution, random_seed=cli.seed,
    )
    opts.data_loader_kwargs = EasyDict(pin_memory=True, num_workers=cli.workers, prefetch_factor=2)

    channel_base = int(spec.channel_scale * 32768)
    _check_cfg_fits_resolution(cli, spec_name, channel_base, data.resolution)
    opts.G_kwargs = EasyDict(
        class_name="training.networks.Generator", z_dim=spec.zdim, w_dim=spec.zdim,
        mapping_kwargs=EasyDict(num_layers=spec.mapping_layers),
        synthesis_kwargs=EasyDict(channel_base=channel_base, channel_max=spec.channel_max,
                                  num_fp16_res=spec.num_fp16_res, conv_clamp=spec.conv_clamp),
    )
    opts.D_kwargs = EasyDict(
        class_name="training.networks.Discriminator", block_kwargs=EasyDict(), mapping_kwargs=EasyDict(),
        epilogue_kwargs=EasyDict(mbstd_group_size=spec.mbstd_group), channel_base=channel_base,
        channel_max=spec.channel_max, num_fp16_res=spec.num_fp16_res, conv_clamp=spec.conv_clamp,
    )
    opts.G_opt_kwargs = EasyDict(class_name="torch.optim.Adam", lr=spec.lrate, betas=[0, 0.99], eps=1e-8)
    opts.D_opt_kwargs = EasyDict(class_name="torch.optim.Adam", lr=spec.lrate, betas=[0, 0.99], eps=1e-8)
    opts.loss_kwargs = EasyDict(class_name="training.loss.StyleGAN2Loss", r1_gamma=spec.gamma)
    opts.total_kimg = spec.kimg
    opts.batch_size = spec.batch
    opts.batch_gpu = max(spec.batch // spec.ref_gpus, 1)
    opts.ema_kimg = spec.ema
    opts.ema_rampup = spec.ramp

    if cli.cfg == "cifar":
        opts.loss_kwargs.pl_weight = 0
        opts.loss_kwargs.style_mixing_prob = 0
        opts.D_kwargs.architecture = "orig"

    if cli.gamma is not None:
        opts.loss_kwargs.r1_gamma = cli.gamma
    if cli.kimg is not None:
        opts.total_kimg = cli.kimg
    if cli.tick is not None:
        opts.kimg_per_tick = cli.tick
    if cli.get("stop_kimg") is not None:
        _set_stop(opts, cli.stop_kimg)
    if cli.batch is not None:
        opts.batch_size = cli.batch
        opts.batch_gpu = cli.batch // cli.gpus
    opts.batch_gpu = max(min(opts.batch_gpu, opts.batch_size // cli.gpus), 1)  # more GPUs than the preset's reference
    _check_batch(opts, cli)

    _set_augmentation(opts, cli)
    _set_resume(opts, cli)
    if cli.freezed is not None:
        opts.D_kwargs.block_kwargs.freeze_layers = cli.freezed
    if cli.fp32:
        opts.G_kwargs.synthesis_kwargs.num_fp16_res = opts.D_kwargs.num_fp16_res = 0
        opts.G_kwargs.synthesis_kwargs.conv_clamp = opts.D_kwargs.conv_clamp = None
    if cli.nhwc:
        opts.G_kwargs.synthesis_kwargs.fp16_channels_last = opts.D_kwargs.block_kwargs.fp16_channels_last = True
    if cli.nobench:
        opts.cudnn_benchmark = False
    if cli.allow_tf32:
        opts.allow_tf32 = True
    _set_speed_switches(opts, cli)

    desc = run_description(cli, data.name, spec_name)
    return opts, desc


def _set_speed_switches(opts: EasyDict, cli: EasyDict) -> None:
    """training/speed.py switches; written only when on, so default runs keep their options unchanged."""
    for name in ("bf16", "channels_last", "compile", "fused_adam"):
        if cli.get(name):
            opts[name] = True
    if cli.get("compile_backend") is not None:
        if not cli.get("compile"):
            raise ConfigError("--compile-backend needs --compile=True")
        opts.compile_backend = cli.compile_backend


def _check_batch(opts: EasyDict, cli: EasyDict) -> None:
    per_gpu = opts.batch_size // cli.gpus
    group = min(opts.D_kwargs.epilogue_kwargs.mbstd_group_size, opts.batch_gpu)
    if opts.batch_size % cli.gpus != 0 or per_gpu % opts.batch_gpu != 0:
        raise ConfigError(
            f"--batch={opts.batch_size}: must split evenly over --gpus={cli.gpus} in chunks of {opts.batch_gpu} images per GPU"
        )
    if opts.batch_gpu % group != 0:
        raise ConfigError(
            f"--batch={opts.batch_size}: the per-GPU chunk ({opts.batch_gpu}) must be divisible by the minibatch-std group "
            f"({group}); use a batch divisible by --gpus x {group} = {cli.gpus * group}"
        )


def _set_augmentation(opts: EasyDict, cli: EasyDict) -> None:
    aug = cli.aug or "ada"
    if aug == "ada":
        opts.ada_target = cli.target if cli.target is not None else ADA_TARGET
        if cli.get("ada_kimg") is not None:  # written only when given: older runs' options stay unchanged
            opts.ada_kimg = cli.ada_kimg
    elif aug == "fixed":
        opts.augment_p = cli.p
    if aug != "noaug":
        from training.augment import AUGPIPE_SPECS  # torch import only once augmentation is configured

        opts.augment_kwargs = EasyDict(class_name="training.augment.AugmentPipe", **AUGPIPE_SPECS[cli.augpipe or AUGPIPE])


def _set_resume(opts: EasyDict, cli: EasyDict) -> None:
    if cli.resume is None or cli.resume == "noresume":
        return
    opts.resume_pkl = RESUME_SPECS.get(cli.resume, cli.resume)
    if cli.resume in RESUME_SPECS or "://" in cli.resume:  # local pickles, run directories, 'latest': their own
        checkpoint.set_transfer_settings(opts, ada_kimg=cli.get("ada_kimg"))
