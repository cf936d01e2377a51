"""What a comparison trains: methods and their variants, presets, resolved settings, train.py commands.

A preset fills every training and scoring field; explicit options override it. A method name is one
of the registered methods (training.method_registry) or a VARIANT (a method plus extra train.py options, e.g. an ablation), so a variant is
trained, recorded and reported exactly like a method.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Any, Optional

from scripts.compare.errors import HarnessError
from training.method_registry import method_class, method_default_aug, method_names, split_method

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_METHODS = "ada,adalinear,insgen,fakeclr"

# Benchmark v2 (issue 26, item 4): the lead's settings, read off the regime curves (docs/results.md, "Regime curves").
V2_KIMG = 100  # r_t ~0.9 from 30 kimg on, fast FID fall over by 50 kimg (no turn up by 200): docs/results.md
V2_ADA_KIMG = 100  # ADA's p can cross its whole range within the budget (upstream's 500 would move it by 0.2 at most)
V2_SNAP_KIMG = 10  # a snapshot every 10 kimg: an interruption loses at most ~3 min of one-thread training
V2_SCORE_EVERY = 20  # FID/KID at 0, 20, 40, 60, 80 and 100 kimg: the curve's shape at a sixth of v1's per-snapshot cost
V2_NUM_GEN = 500  # 500 fakes: the regime curves' count, so v2 numbers sit on the same scale as those curves
INSGEN_ADA_LINEAR_BELOW = 5000  # InsGen switches to ADA-Linear below 5K images (FakeCLR paper footnote)

# Presets. kimg=None: chosen from the dataset size (paper_kimg). Explicit options override every field.
PRESETS: dict[str, dict[str, Any]] = {
    # The FakeCLR paper's recipe: paper256, global batch 64, x-flips, ADA-Linear for the contrastive
    # methods, FID with 50k fakes against the full training set.
    "paper": dict(cfg="paper256", batch=64, mirror=True, kimg=None, tick=4, snap=50, num_gen=50000,
                  contrastive_ada_linear=True, workers=None),
    # About one GPU-hour per method on one H100-class GPU (an estimate, see docs/results.md): the paper
    # recipe cut to 200 kimg, a snapshot every 40 kimg, FID/KID with 10k fakes.
    "gpu-hour": dict(cfg="paper256", batch=64, mirror=True, kimg=200, tick=4, snap=10, num_gen=10000,
                     contrastive_ada_linear=True, workers=None),
    # CPU smoke test (tiny preset, 32 px data, minutes): 2 kimg, a snapshot every kimg, 200 fakes.
    "cpu-smoke": dict(cfg="tiny", batch=None, mirror=True, kimg=2, tick=1, snap=1, num_gen=200,
                      contrastive_ada_linear=True, workers=1),
    # The multi-seed CPU benchmark (scripts/compare/benchmark.py: datasets, seeds, the long curve run).
    # Budget and fake count were chosen from measurements, see docs/results.md ("CPU benchmark").
    "cpu-bench": dict(cfg="tiny", batch=None, mirror=True, kimg=12, tick=1, snap=3, num_gen=200,
                      contrastive_ada_linear=True, workers=1, threads=1, baseline="adalinear"),
    # The regime curves (issue 26, item 3): no augmentation against ADA on emoji-smileys at 32 px, long
    # enough (200 kimg) for D to overfit the 169 images; a snapshot with FID/KID every 10 kimg and the
    # per-kimg r_t, p and D score gap from stats.jsonl. 500 fakes: the curve's turn, not a table cell.
    "cpu-regime": dict(cfg="tiny", batch=None, mirror=True, kimg=200, tick=1, snap=10, num_gen=500,
                       contrastive_ada_linear=True, workers=1, threads=1, baseline="noaug"),
    # Benchmark v2 (scripts/compare/benchmark.py, issue 26 item 4): the V2_* constants above; one thread per run;
    # --ada-kimg only where the adaptive controller runs (ada_kimg_acts).
    "cpu-bench-v2": dict(cfg="tiny", batch=None, mirror=True, kimg=V2_KIMG, tick=1, snap=V2_SNAP_KIMG,
                         num_gen=V2_NUM_GEN, score_every=V2_SCORE_EVERY, ada_kimg=V2_ADA_KIMG,
                         contrastive_ada_linear=True, workers=1, threads=1, baseline="adalinear"),
}
# Ablation variants: selectable by name, never run unless asked for. Each changes one FakeCLR
# option against the `fakeclr` preset: the forgetting factor as the released code computes it; a
# query view drawn independently of the key's; the fake queue held at its starting length (32 at
# the cpu-bench batch of 8) instead of shrinking; the contrastive weight on D (lambda^f) lowered and
# raised; a larger relative latent noise.
# Augmentation variants of the ada method: none at all (plain StyleGAN2), and ADA reacting over 100 kimg
# (upstream's transfer-learning speed) instead of 500, so that p can cover its range within a CPU budget.
# fakeclr-adaptive: FakeCLR's contrastive term on ADA's adaptive p instead of the paper's linear ramp, to set
# against ada itself where the ramp is the weaker schedule (cpu-bench-v2 gives it --ada-kimg like ada).
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "noaug": ("ada", ("--aug=noaug",)),
    "ada-kimg100": ("ada", ("--ada-kimg=100",)),
    "fakeclr-forget-code": ("fakeclr", ("--forgetting=code",)),
    "fakeclr-query-indep": ("fakeclr", ("--cl_query_view=independent",)),
    "fakeclr-queue-fixed32": ("fakeclr", ("--fqs_schedule=fixed", "--fqs=32")),
    "fakeclr-lambda-0.3": ("fakeclr", ("--lambda_D=0.3",)),
    "fakeclr-lambda-3": ("fakeclr", ("--lambda_D=3",)),
    "fakeclr-noise-0.3": ("fakeclr", ("--noise_scale=0.3",)),
    "fakeclr-adaptive": ("fakeclr", ("--ada_linear=False",)),
}


def base_method(name: str) -> str:
    """The train.py --method of a method or variant name."""
    return VARIANTS[name][0] if name in VARIANTS else name


def _is_method(name: str) -> bool:
    """A registered method or a base method + add-ons (training.method_registry)."""
    try:
        split_method(name)
    except ValueError:
        return False
    return True


def parse_methods(methods: str | list[str]) -> list[str]:
    """Comma-separated method/variant names, checked."""
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    names = [m for m in names if m]
    unknown = [m for m in names if not _is_method(m) and m not in VARIANTS]
    if not names or unknown:
        raise HarnessError(f"--methods: unknown method(s) {', '.join(unknown) or '(none given)'}; "
                                   f"use a comma-separated list of {', '.join(method_names() + tuple(VARIANTS))} "
                                   "(add-ons join a base method with '+', e.g. ada+lecam)")
    if len(set(names)) != len(names):
        raise HarnessError("--methods: a method is listed twice")
    return names


def paper_kimg(num_images: int) -> tuple[float, str]:
    """Training length of the `paper` preset for a dataset of num_images (before x-flips)."""
    if num_images < INSGEN_ADA_LINEAR_BELOW:
        return 10000.0, (f"{num_images} < 5,000 images: 10,000 kimg, the FakeCLR README command (the paper prints no "
                         f"per-dataset durations)")
    return 25000.0, f"{num_images} >= 5,000 images: 25,000 kimg, the paper256 default (InsGen)"


@dataclass
class Settings:
    data: str
    outdir: str
    preset: str
    methods: list[str]
    cfg: str
    batch: Optional[int]
    mirror: bool
    kimg: float
    tick: float
    snap: int
    seed: int = 0
    gamma: Optional[float] = None
    workers: Optional[int] = None
    gpus_per_run: int = 1
    parallel: int = 1
    threads: Optional[int] = None  # OMP/MKL threads of each train.py child (None: inherited)
    train_args: list[str] = field(default_factory=list)
    contrastive_ada_linear: bool = True
    num_gen: int = 50000
    score_every: Optional[float] = None  # kimg between scored snapshots (None: score every snapshot)
    eval_seed: int = 0
    eval_data: Optional[str] = None
    eval_batch: int = 64
    evaluator: str = "inception"
    inception: Optional[str] = None
    baseline: str = "ada"
    dataset_name: str = ""
    dataset_size: int = 0
    dataset_resolution: int = 0
    kimg_note: str = ""
    ada_kimg: Optional[float] = None  # train.py --ada-kimg, given only to methods whose adaptive p it steers
    stop_kimg: Optional[float] = None  # train.py --stop-kimg: only the start of the kimg schedule (None: all of it)

    @property
    def end_kimg(self) -> float:
        """Where each run stops training: stop_kimg, or the end of the schedule."""
        return self.kimg if self.stop_kimg is None else self.stop_kimg

    def training_key(self) -> dict:
        """What must not change between a comparison and its resumption."""
        key = dict(data=self.data, cfg=self.cfg, batch=self.batch, mirror=self.mirror, kimg=self.kimg, tick=self.tick,
                   snap=self.snap, seed=self.seed, gamma=self.gamma, gpus_per_run=self.gpus_per_run,
                   train_args=list(self.train_args), contrastive_ada_linear=self.contrastive_ada_linear)
        if self.ada_kimg is not None:  # only when set: comparisons recorded before the field keep their key
            key["ada_kimg"] = self.ada_kimg
        return key  # stop_kimg is not in it: a comparison stopped part-way may go on to a later stop or the end

    def eval_key(self, evaluator_name: str) -> dict:
        return dict(evaluator=evaluator_name, num_gen=self.num_gen, eval_seed=self.eval_seed, eval_data=self.eval_data)


def dataset_info(path: str) -> tuple[str, int, int, bool]:
    """(name, number of images, resolution, has labels) of a dataset folder or zip."""
    from training.dataset import ImageFolderDataset

    if not os.path.exists(path):
        raise HarnessError(f"--data={path}: no such directory or zip file; build one with dataset_tool.py")
    dataset = ImageFolderDataset(path=path, use_labels=False, cache_in_ram=False)
    info = dataset.name, len(dataset), dataset.resolution
    dataset.close()
    try:
        labelled = ImageFolderDataset(path=path, use_labels=True, cache_in_ram=False).label_dim > 0
    except ValueError:
        labelled = False
    return (*info, labelled)


def resolve_settings(data: str, preset: str = "cpu-smoke", outdir: Optional[str] = None,
                     methods: str | list[str] = DEFAULT_METHODS, **overrides: Any) -> Settings:
    """The preset's values, then every override that is not None; kimg=None in `paper` follows the dataset size."""
    if preset not in PRESETS:
        raise HarnessError(f"--preset={preset}: use one of {', '.join(PRESETS)}")
    names = parse_methods(methods)
    data = os.path.abspath(os.path.expanduser(data))
    name, size, resolution, labelled = dataset_info(data)
    if "contragan" in names and not labelled:
        raise HarnessError("--methods=contragan needs a labelled dataset (dataset.json labels)")
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    note = ""
    if values.get("kimg") is None:
        values["kimg"], note = paper_kimg(size)
    if outdir is None:
        outdir = os.path.join("runs", f"compare-{name}-{preset}")
    settings = Settings(data=data, outdir=os.path.abspath(outdir), preset=preset, methods=names,
                        dataset_name=name, dataset_size=size, dataset_resolution=resolution, kimg_note=note,
                        **{k: v for k, v in values.items() if k in Settings.__dataclass_fields__})
    settings.train_args = list(settings.train_args or [])
    if settings.kimg <= 0 or settings.tick <= 0 or settings.snap < 1 or settings.num_gen < 2:
        raise HarnessError("--kimg and --tick must be positive, --snap and --num-gen at least 1 and 2")
    if settings.stop_kimg is not None and not 0 < settings.stop_kimg <= settings.kimg:
        raise HarnessError(f"--stop-kimg={format_number(settings.stop_kimg)}: must be above 0 and at most "
                           f"--kimg={format_number(settings.kimg)} (it stops the runs part-way through that schedule)")
    if settings.eval_data is not None:
        settings.eval_data = os.path.abspath(os.path.expanduser(settings.eval_data))
    if settings.baseline not in names:
        settings.baseline = names[0]
    return settings


def format_number(value: float) -> str:
    """1.0 -> '1', 0.032 -> '0.032', 10000.0 -> '10000' (never an exponent)."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text or "0"


def insgen_ada_linear(settings: Settings, method: str) -> bool:
    return method == "insgen" and settings.contrastive_ada_linear and settings.dataset_size < INSGEN_ADA_LINEAR_BELOW


def ada_kimg_acts(settings: Settings, name: str) -> bool:
    """Whether train.py's --ada-kimg steers this method's p: only the adaptive controller reads it. ADA-Linear's
    ramp (adalinear, fakeclr, InsGen below 5K images) and --aug=noaug/fixed have no adaptive p."""
    method = base_method(name)
    extra = list(VARIANTS[name][1] if name in VARIANTS else ()) + list(settings.train_args)
    if any(arg.startswith(("--aug=", "--ada-kimg", "--ada_kimg")) for arg in extra):
        return False  # the variant or --train-args sets the augmentation itself (or the speed already)
    if method_default_aug(method) not in (None, "ada"):
        return False  # an add-on alone that trains without ADA (e.g. diffaugment)
    linear = method_class(split_method(method)[0]).preset.get("ada_linear", False) or insgen_ada_linear(settings, method)
    given = [arg.split("=", 1)[1] for arg in extra if arg.startswith(("--ada_linear=", "--ada-linear="))]
    if given:  # the variant or --train-args chooses the schedule: the last value counts, as on train.py's line
        linear = given[-1].strip().lower() in ("true", "t", "1", "yes", "y", "on")  # click's words for True
    return not linear


def method_train_args(settings: Settings, name: str) -> list[str]:
    method = base_method(name)
    args = [f"--method={method}"]
    if insgen_ada_linear(settings, method):
        args.append("--ada_linear=True")  # fakeclr's preset already ramps p linearly
    if method == "contragan":
        args.append("--cond=True")
    if settings.ada_kimg is not None and ada_kimg_acts(settings, name):
        args.append(f"--ada-kimg={format_number(settings.ada_kimg)}")
    return args + list(VARIANTS[name][1] if name in VARIANTS else ())


def train_command(settings: Settings, method: str, resume: Optional[str] = None) -> list[str]:
    """train.py arguments (without the interpreter) for one method."""
    args = [os.path.join(REPO, "train.py"), f"--outdir={method_runs_dir(settings, method)}", f"--data={settings.data}",
            f"--cfg={settings.cfg}", f"--mirror={settings.mirror}", f"--kimg={format_number(settings.kimg)}",
            f"--tick={format_number(settings.tick)}", f"--snap={settings.snap}", f"--seed={settings.seed}",
            "--metrics=none", f"--gpus={settings.gpus_per_run}"]
    optional = {"batch": settings.batch, "gamma": settings.gamma, "workers": settings.workers}  # None: train.py's
    args += [f"--{name}={format_number(value)}" for name, value in optional.items() if value is not None]
    args += method_train_args(settings, method) + list(settings.train_args)
    if settings.stop_kimg is not None and settings.stop_kimg < settings.kimg:
        args.append(f"--stop-kimg={format_number(settings.stop_kimg)}")
    if resume is not None:  # a new run directory per resume: each run's snapshots keep their own record
        args += [f"--resume={resume}", "--resume-mode=new"]
    return args


def display_command(args: list[str]) -> str:
    """The command as a user would type it from the repository root."""
    shown = ["python"]
    for arg in args:
        for prefix in ("", "--outdir=", "--data=", "--resume="):
            if arg.startswith(prefix) and os.path.isabs(arg[len(prefix):]):
                arg = prefix + short_path(arg[len(prefix):])
                break
        shown.append(arg)
    return shlex.join(shown)


def short_path(path: str) -> str:
    rel = os.path.relpath(path, REPO)
    return rel if not rel.startswith("..") else path


def method_runs_dir(settings: Settings, method: str) -> str:
    return os.path.join(settings.outdir, "runs", method)
