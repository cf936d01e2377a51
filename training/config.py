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
from training.defaults import ADA_TARGET, AUGPIPE, TRANSFER_ADA_KIMG, with_cli_defaults

# ----------------------------------------------------------------------------
# Presets (spec 1.2). `tiny` is ours: a CPU-sized network for the demo, tests and smoke runs.


@dataclasses.dataclass(frozen=True)
class CfgSpec:
    ref_gpus: int
    kimg: int
    mb: int
    mbstd: int
    fmaps: float
    lrate: float
    gamma: float
    ema: float
    ramp: Optional[float]
    map: int
    channel_max: int = 512
    zdim: int = 512
    num_fp16_res: int = 4
    conv_clamp: Optional[int] = 256


CFG_SPECS: dict[str, CfgSpec] = {
    "stylegan2": CfgSpec(ref_gpus=8, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=10, ema=10, ramp=None, map=8),
    "paper256": CfgSpec(ref_gpus=8, kimg=25000, mb=64, mbstd=8, fmaps=0.5, lrate=0.0025, gamma=1, ema=20, ramp=None, map=8),
    "paper512": CfgSpec(ref_gpus=8, kimg=25000, mb=64, mbstd=8, fmaps=1, lrate=0.0025, gamma=0.5, ema=20, ramp=None, map=8),
    "paper1024": CfgSpec(ref_gpus=8, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=2, ema=10, ramp=None, map=8),
    "cifar": CfgSpec(ref_gpus=2, kimg=100000, mb=64, mbstd=32, fmaps=1, lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2),
    # CPU-sized (ours): 32 channels everywhere, 64-d latents, 2 mapping layers, FP32, small batch.
    "tiny": CfgSpec(ref_gpus=1, kimg=2, mb=8, mbstd=4, fmaps=0.125, lrate=0.0025, gamma=0.025, ema=1, ramp=0.05, map=2,
                    channel_max=32, zdim=64, num_fp16_res=0, conv_clamp=None),
}
CFG_NAMES = ["auto", *CFG_SPECS]


def auto_cfg_spec(gpus: int, res: int) -> CfgSpec:
    """The `auto` formulas of spec 1.2."""
    mb = max(min(gpus * min(4096 // res, 32), 64), gpus)
    return CfgSpec(
        ref_gpus=gpus, kimg=25000, mb=mb, mbstd=min(mb // gpus, 4), fmaps=1 if res >= 512 else 0.5,
        lrate=0.002 if res >= 1024 else 0.0025, gamma=0.0002 * (res ** 2) / mb, ema=mb * 10 / 32, ramp=0.05, map=2,
    )


def resolve_cfg_spec(cfg: str, gpus: int, res: int) -> CfgSpec:
    if cfg == "auto":
        return auto_cfg_spec(gpus, res)
    if cfg not in CFG_SPECS:
        raise ConfigError(f"--cfg={cfg}: unknown preset; choose one of {', '.join(CFG_NAMES)}")
    return CFG_SPECS[cfg]


# ----------------------------------------------------------------------------
# Augmentation pipelines (spec 1.4) and transfer-learning sources (spec 1.1).

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
# Run directories (spec 1.5).


def run_description(o: EasyDict, dataset_name: str, spec_name: str) -> str:
    """`<data>[-cond][-subsetN][-mirror]-<cfg>[...]`: only explicitly given options appear."""
    parts = [dataset_name]
    if o.cond:
        parts.append("cond")
    if o.subset is not None:
        parts.append(f"subset{o.subset}")
    if o.mirror:
        parts.append("mirror")
    parts.append(spec_name)
    if o.gamma is not None:
        parts.append(f"gamma{o.gamma:g}")
    if o.kimg is not None:
        parts.append(f"kimg{o.kimg:g}")
    if o.batch is not None:
        parts.append(f"batch{o.batch}")
    if o.aug is not None:
        parts.append(o.aug)
    if o.p is not None:
        parts.append(f"p{o.p:g}")
    if o.target is not None:
        parts.append(f"target{o.target:g}")
    if o.get("ada_kimg") is not None:
        parts.append(f"adakimg{o.ada_kimg:g}")
    if o.augpipe is not None:
        parts.append(o.augpipe)
    if o.resume is not None:
        if o.resume == "noresume":
            parts.append("noresume")
        elif o.resume in RESUME_SPECS:
            parts.append(f"resume{o.resume}")
        else:
            parts.append("resumecustom")
    if o.freezed is not None:
        parts.append(f"freezed{o.freezed}")
    if o.get("method") is not None:
        parts.append(o.method)
    elif o.get("ada_linear"):
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


def validate_basic(o: EasyDict) -> None:
    """Checks that need no dataset."""
    if o.gpus < 1 or (o.gpus & (o.gpus - 1)) != 0:
        raise ConfigError(f"--gpus={o.gpus}: must be a power of two (1, 2, 4, 8, ...)")
    if o.snap < 1:
        raise ConfigError(f"--snap={o.snap}: must be at least 1")
    if o.gamma is not None and o.gamma < 0:
        raise ConfigError(f"--gamma={o.gamma}: must be >= 0")
    if o.kimg is not None and o.kimg <= 0:
        raise ConfigError(f"--kimg={o.kimg:g}: must be positive (fractions such as 0.5 are fine)")
    if o.get("tick") is not None and o.tick <= 0:
        raise ConfigError(f"--tick={o.tick:g}: must be positive (kimg per tick)")
    if o.batch is not None and (o.batch < 1 or o.batch % o.gpus != 0):
        raise ConfigError(f"--batch={o.batch}: must be a positive multiple of --gpus={o.gpus}")
    if o.workers < 1:
        raise ConfigError(f"--workers={o.workers}: must be at least 1")
    if o.freezed is not None and o.freezed < 0:
        raise ConfigError(f"--freezed={o.freezed}: must be >= 0")
    aug = o.aug or "ada"
    if aug not in ("ada", "noaug", "fixed"):
        raise ConfigError(f"--aug={aug}: choose ada, noaug or fixed")
    if o.p is not None and aug != "fixed":
        raise ConfigError("--p can only be given with --aug=fixed")
    if aug == "fixed" and o.p is None:
        raise ConfigError("--aug=fixed needs --p=<probability in [0,1]>")
    if o.p is not None and not 0 <= o.p <= 1:
        raise ConfigError(f"--p={o.p}: must lie in [0, 1]")
    if o.target is not None and aug != "ada":
        raise ConfigError("--target can only be given with --aug=ada")
    if o.target is not None and not 0 <= o.target <= 1:
        raise ConfigError(f"--target={o.target}: must lie in [0, 1]")
    if o.get("ada_kimg") is not None and aug != "ada":
        raise ConfigError(f"--ada-kimg can only be given with --aug=ada (got --aug={aug}); drop --ada-kimg")
    if o.get("ada_kimg") is not None and not o.ada_kimg > 0:
        raise ConfigError(f"--ada-kimg={o.ada_kimg:g}: must be > 0 (kimg for ADA's p to move by 1; default 500)")
    if o.augpipe is not None and aug == "noaug":
        raise ConfigError("--augpipe cannot be combined with --aug=noaug")
    if o.augpipe is not None and o.augpipe not in AUGPIPE_NAMES:
        raise ConfigError(f"--augpipe={o.augpipe}: choose one of {', '.join(AUGPIPE_NAMES)}")
    if o.resume is not None and o.resume != "noresume" and o.resume not in RESUME_SPECS and o.resume != "latest":
        if "://" not in o.resume and not os.path.exists(o.resume):
            raise ConfigError(
                f"--resume={o.resume}: not a known preset ({', '.join(RESUME_SPECS)}, latest), an existing pickle/run "
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


def _check_cfg_fits_resolution(o: EasyDict, spec_name: str, channel_base: int, resolution: int) -> None:
    """A layer at resolution r has channel_base // r channels: none at all would divide by zero deep in the
    network's construction, after the run directory exists."""
    if resolution > MAX_RESOLUTION:
        raise ConfigError(f"--data={o.data}: images are {resolution}x{resolution}, larger than the {MAX_RESOLUTION}x"
                          f"{MAX_RESOLUTION} the networks support; rebuild it with dataset_tool.py --resolution")
    if channel_base // resolution < 1:
        raise ConfigError(f"--cfg={spec_name}: its networks have no channels left at {resolution}x{resolution} "
                          f"(channel base {channel_base}); use --cfg=auto, or a dataset of at most {channel_base}x"
                          f"{channel_base} (dataset_tool.py --resolution)")


def build_training_options(o: EasyDict, data: DatasetInfo, metrics: list[str]) -> tuple[EasyDict, str]:
    """Translate CLI options into the training-loop kwargs (the content of training_options.json)."""
    if o.cond and data.label_dim == 0:
        raise ConfigError(f"--cond=True: dataset {o.data} has no labels (dataset.json); drop --cond or add labels")
    if o.subset is not None and not 1 <= o.subset <= data.size:
        raise ConfigError(f"--subset={o.subset}: must lie between 1 and the dataset size {data.size}")

    spec = resolve_cfg_spec(o.cfg, o.gpus, data.resolution)
    spec_name = f"auto{o.gpus}" if o.cfg == "auto" else o.cfg
    t = EasyDict(num_gpus=o.gpus, image_snapshot_ticks=o.snap, network_snapshot_ticks=o.snap,
                 metrics=metrics, random_seed=o.seed)
    t.training_set_kwargs = EasyDict(
        class_name="training.dataset.ImageFolderDataset", path=os.path.abspath(o.data), use_labels=bool(o.cond),
        max_size=o.subset if o.subset is not None else data.size, xflip=bool(o.mirror),
        resolution=data.resolution, random_seed=o.seed,
    )
    t.data_loader_kwargs = EasyDict(pin_memory=True, num_workers=o.workers, prefetch_factor=2)

    channel_base = int(spec.fmaps * 32768)
    _check_cfg_fits_resolution(o, spec_name, channel_base, data.resolution)
    t.G_kwargs = EasyDict(
        class_name="training.networks.Generator", z_dim=spec.zdim, w_dim=spec.zdim,
        mapping_kwargs=EasyDict(num_layers=spec.map),
        synthesis_kwargs=EasyDict(channel_base=channel_base, channel_max=spec.channel_max,
                                  num_fp16_res=spec.num_fp16_res, conv_clamp=spec.conv_clamp),
    )
    t.D_kwargs = EasyDict(
        class_name="training.networks.Discriminator", block_kwargs=EasyDict(), mapping_kwargs=EasyDict(),
        epilogue_kwargs=EasyDict(mbstd_group_size=spec.mbstd), channel_base=channel_base,
        channel_max=spec.channel_max, num_fp16_res=spec.num_fp16_res, conv_clamp=spec.conv_clamp,
    )
    t.G_opt_kwargs = EasyDict(class_name="torch.optim.Adam", lr=spec.lrate, betas=[0, 0.99], eps=1e-8)
    t.D_opt_kwargs = EasyDict(class_name="torch.optim.Adam", lr=spec.lrate, betas=[0, 0.99], eps=1e-8)
    t.loss_kwargs = EasyDict(class_name="training.loss.StyleGAN2Loss", r1_gamma=spec.gamma)
    t.total_kimg = spec.kimg
    t.batch_size = spec.mb
    t.batch_gpu = max(spec.mb // spec.ref_gpus, 1)
    t.ema_kimg = spec.ema
    t.ema_rampup = spec.ramp

    if o.cfg == "cifar":
        t.loss_kwargs.pl_weight = 0
        t.loss_kwargs.style_mixing_prob = 0
        t.D_kwargs.architecture = "orig"

    if o.gamma is not None:
        t.loss_kwargs.r1_gamma = o.gamma
    if o.kimg is not None:
        t.total_kimg = o.kimg
    if o.tick is not None:
        t.kimg_per_tick = o.tick
    if o.batch is not None:
        t.batch_size = o.batch
        t.batch_gpu = o.batch // o.gpus
    t.batch_gpu = max(min(t.batch_gpu, t.batch_size // o.gpus), 1)  # more GPUs than the preset's reference
    _check_batch(t, o)

    _set_augmentation(t, o)
    _set_resume(t, o)
    if o.freezed is not None:
        t.D_kwargs.block_kwargs.freeze_layers = o.freezed
    if o.fp32:
        t.G_kwargs.synthesis_kwargs.num_fp16_res = t.D_kwargs.num_fp16_res = 0
        t.G_kwargs.synthesis_kwargs.conv_clamp = t.D_kwargs.conv_clamp = None
    if o.nhwc:
        t.G_kwargs.synthesis_kwargs.fp16_channels_last = t.D_kwargs.block_kwargs.fp16_channels_last = True
    if o.nobench:
        t.cudnn_benchmark = False
    if o.allow_tf32:
        t.allow_tf32 = True
    _set_speed_switches(t, o)

    desc = run_description(o, data.name, spec_name)
    return t, desc


def _set_speed_switches(t: EasyDict, o: EasyDict) -> None:
    """training/speed.py switches; written only when on, so default runs keep their options unchanged."""
    for name in ("bf16", "channels_last", "compile", "fused_adam"):
        if o.get(name):
            t[name] = True
    if o.get("compile_backend") is not None:
        if not o.get("compile"):
            raise ConfigError("--compile-backend needs --compile=True")
        t.compile_backend = o.compile_backend


def _check_batch(t: EasyDict, o: EasyDict) -> None:
    per_gpu = t.batch_size // o.gpus
    group = min(t.D_kwargs.epilogue_kwargs.mbstd_group_size, t.batch_gpu)
    if t.batch_size % o.gpus != 0 or per_gpu % t.batch_gpu != 0:
        raise ConfigError(
            f"--batch={t.batch_size}: must split evenly over --gpus={o.gpus} in chunks of {t.batch_gpu} images per GPU"
        )
    if t.batch_gpu % group != 0:
        raise ConfigError(
            f"--batch={t.batch_size}: the per-GPU chunk ({t.batch_gpu}) must be divisible by the minibatch-std group "
            f"({group}); use a batch divisible by --gpus x {group} = {o.gpus * group}"
        )


def _set_augmentation(t: EasyDict, o: EasyDict) -> None:
    aug = o.aug or "ada"
    if aug == "ada":
        t.ada_target = o.target if o.target is not None else ADA_TARGET
        if o.get("ada_kimg") is not None:  # written only when given: older runs' options stay unchanged
            t.ada_kimg = o.ada_kimg
    elif aug == "fixed":
        t.augment_p = o.p
    if aug != "noaug":
        from training.augment import AUGPIPE_SPECS  # torch import only once augmentation is configured

        t.augment_kwargs = EasyDict(class_name="training.augment.AugmentPipe", **AUGPIPE_SPECS[o.augpipe or AUGPIPE])


def _set_resume(t: EasyDict, o: EasyDict) -> None:
    if o.resume is None or o.resume == "noresume":
        return
    t.resume_pkl = RESUME_SPECS.get(o.resume, o.resume)
    if o.resume in RESUME_SPECS or "://" in o.resume:
        # Transfer learning from a published network: react faster, no EMA ramp-up (spec 1.1).
        # Local pickles, run directories and 'latest' continue with the run's own settings.
        # An explicit --ada-kimg wins over the transfer value.
        if o.get("ada_kimg") is None:
            t.ada_kimg = TRANSFER_ADA_KIMG
        t.ema_rampup = None
