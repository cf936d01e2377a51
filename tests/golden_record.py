"""Golden trajectories: a short fixed-seed CPU training per method, summarised, recorded and compared.

Each run is train.py's own option resolution (`--cfg=tiny`, 32 px emoji, seed 0, batch 8) followed by
GOLDEN_STEPS iterations of the real Trainer on one thread, in this process, writing nothing. The final
weights and buffers of G, D, G_ema, the method's modules (D_ema, heads, queues, 2C embedding) and ADA's
p are reduced to per-tensor summaries (see `summarize`) that survive another CPU or library version
within the tolerances of tests/test_golden_trajectories.py (`deviations`, `moved_deviations`), unlike a
bit-exact digest.

Record (a deliberate numeric change updates the references in its own commit, saying why):
    OMP_NUM_THREADS=1 python tests/golden_record.py                 # every method
    OMP_NUM_THREADS=1 python tests/golden_record.py --method=fakeclr
Measure the run-to-run deviation that the tolerance must cover (repeats, threads, oneDNN off) and the
deviation of real changes (lr x (1 + 1e-3), one more step, another seed):
    python tests/golden_record.py --measure
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pathlib
import sys
import tempfile
import zlib
from typing import Any, Iterator, Optional

import torch

TESTS_DIR = pathlib.Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # run as a script: train_helpers sits beside this file
    sys.path.insert(0, str(TESTS_DIR))

from train_helpers import REPO_ROOT, build_labelled_zip, build_zip, resolve  # noqa: E402

GOLDEN_DIR = TESTS_DIR / "golden"
# Four steps: after the fifth, the GAN's dynamics amplify rounding differences ~10x per step (measured:
# a 2-thread run deviates 1e-6 up to step 4, 1e-5 at step 5, 1e-3 at step 8), swamping the signal of small changes.
GOLDEN_STEPS = 4  # G and D main steps, G regularisation at steps 1 and 4 (lazy, every 4), D regularisation at step 1
LOOP_OVERRIDES = dict(ada_interval=1)  # p adjusts after every step, so augmentation acts from step 2 on
STEP_KIMG = 0.008  # batch 8 of the tiny preset
GOLDEN_RUNS = {  # method -> train.py options on top of the common ones
    "noaug": ["--aug=noaug"],
    "ada": ["--ada-kimg=0.1"],  # p moves by 0.08 per step
    "adalinear": ["--method=adalinear"],
    "insgen": ["--method=insgen"],
    "fakeclr": ["--method=fakeclr"],
    "contragan": ["--method=contragan", "--cond=True"],  # on the labelled copy of the data
}
NUM_PROJECTIONS = 3  # seeded random unit vectors per tensor
NUM_VALUES = 4  # raw values at seeded positions per tensor
MOVED_FLOOR = 1e-4  # tensors that moved less than this (0.04 lr) are compared absolutely
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------
# Running one golden trajectory.


def golden_options(method: str, data: pathlib.Path, labelled: pathlib.Path, extra: tuple[str, ...] = ()) -> Any:
    """The Trainer options of the method's golden run (as train.py resolves them; no run directory)."""
    with tempfile.TemporaryDirectory() as outdir:
        opts, _ = resolve(f"--outdir={outdir}", f"--data={labelled if method == 'contragan' else data}",
                          "--cfg=tiny", f"--kimg={GOLDEN_STEPS * STEP_KIMG:g}", "--metrics=none", "--workers=1",
                          "--seed=0", *GOLDEN_RUNS[method], *extra)
    opts.update(LOOP_OVERRIDES)
    opts.run_dir = None  # no grids, logs or snapshots
    opts.data_loader_kwargs.num_workers = 0  # the same images in the same order, without worker processes
    return opts


@contextlib.contextmanager
def torch_settings(threads: int = 1, mkldnn: bool = True) -> Iterator[None]:
    previous = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mkldnn
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.backends.mkldnn.enabled = previous[1]


def train(opts: Any, steps: Optional[int] = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Run the golden trajectory; returns (final, initial): every tensor that describes the trained state,
    by name, after the last step and before the first."""
    from torch_utils import training_stats
    from training.training_loop import Trainer

    training_stats.reset_all()  # nothing reported by an earlier run in this process leaks into ADA's r_t
    trainer = Trainer(opts, rank=0, device=torch.device("cpu"), abort_fn=None)
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        trainer.setup()
    initial = _state_tensors(trainer)
    for _ in range(GOLDEN_STEPS if steps is None else steps):
        trainer.train_step()
    return _state_tensors(trainer), initial


def _state_tensors(trainer: Any) -> dict[str, torch.Tensor]:
    tensors = {}
    for owner, module in [("G", trainer.G), ("D", trainer.D), ("G_ema", trainer.G_ema),
                          *((f"method.{name}", m) for name, m in trainer.method_modules().items())]:
        for name, value in module.state_dict().items():
            if isinstance(value, torch.Tensor):
                tensors[f"{owner}.{name}"] = value.detach().clone()
    if trainer.augment_pipe is not None:
        tensors["augment_pipe.p"] = trainer.augment_pipe.p.detach().clone()
    return tensors


# ----------------------------------------------------------------------------
# Summaries and their comparison.


def _summary(name: str, tensor: torch.Tensor, start: Optional[torch.Tensor]) -> dict:
    x = tensor.detach().flatten().double()
    entry: dict[str, Any] = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", "")}
    if x.numel() == 0:
        return entry
    if not tensor.is_floating_point():  # counters and queue pointers: exact
        entry["exact"] = [int(v) for v in x[:NUM_VALUES].tolist()] + [int(x.sum().item())]
        return entry
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))  # the same vectors on every machine
    directions = torch.randn(NUM_PROJECTIONS, x.numel(), generator=gen, dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True)
    positions = torch.randint(x.numel(), (NUM_VALUES,), generator=gen)
    entry.update(rms=x.square().mean().sqrt().item(),
                 stats=[x.sum().item() / math.sqrt(x.numel()),  # the projection on the constant unit vector
                        x.norm().item(), *(directions @ x).tolist(), *x[positions].tolist()])
    if start is not None and start.shape == tensor.shape:
        entry["moved"] = (x - start.detach().flatten().double()).square().mean().sqrt().item()
    return entry


def summarize(trajectory: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]) -> dict[str, dict]:
    """Per tensor of `train()`'s result: its shape, rms, statistics of the final values (the sum's and
    seeded random unit projections, the norm, values at seeded positions) and `moved`, the rms distance
    from its value before the first step."""
    final, initial = trajectory
    return {name: _summary(name, tensor, initial.get(name)) for name, tensor in sorted(final.items())}


def deviations(reference: dict[str, dict], summary: dict[str, dict]) -> dict[str, float]:
    """Per tensor, the largest statistic difference in units of max(rms element of the reference, 1)
    (inf for a missing tensor, another shape or a differing integer tensor).

    Absolute below rms 1: under the equalised learning rate every weight starts N(0, 1) and Adam moves
    each element by about lr per step whatever its tensor's size, so a near-zero bias (whose rms can be
    1e-5 after steps that cancel) is held to the same absolute precision as a weight."""
    out = {}
    for name in sorted(set(reference) | set(summary)):
        ref, got = reference.get(name), summary.get(name)
        if ref is None or got is None or ref["shape"] != got["shape"] or ref.get("exact") != got.get("exact"):
            out[name] = math.inf
            continue
        if "stats" not in ref:
            out[name] = 0.0
            continue
        scale = max(ref["rms"], 1.0)
        out[name] = max(abs(a - b) for a, b in zip(ref["stats"], got["stats"])) / scale
    return out


def moved_deviations(reference: dict[str, dict], summary: dict[str, dict]) -> dict[str, float]:
    """Per tensor, the relative difference of `moved` (the distance travelled), floored at MOVED_FLOOR.

    Adam's first steps are sign-like (beta1 = 0): rounding noise flips the odd element whose gradient is
    near zero, which moves a final value by 2 lr but keeps the step's size, so the distance travelled
    hardly changes (most for scalars such as noise_strength, where the steps partly cancel); a change of
    the learning rate or of the losses changes every element's step, hence this distance, coherently."""
    out = {}
    for name, ref in reference.items():
        got = summary.get(name, {})
        if "moved" in ref:
            out[name] = abs(ref["moved"] - got.get("moved", math.inf)) / max(ref["moved"], MOVED_FLOOR)
    return out


def worst(deviation: dict[str, float]) -> tuple[str, float]:
    name = max(deviation, key=deviation.get)
    return name, deviation[name]


# ----------------------------------------------------------------------------
# Reference files.


def reference_path(method: str) -> pathlib.Path:
    return GOLDEN_DIR / f"{method}.json"


def load_reference(method: str) -> dict:
    data = json.loads(reference_path(method).read_text())
    if data.get("format") != FORMAT_VERSION:
        raise ValueError(f"{reference_path(method)}: format {data.get('format')!r}, expected {FORMAT_VERSION}; "
                         f"re-record with python tests/golden_record.py --method={method}")
    return data["tensors"]


def write_reference(method: str, summary: dict) -> None:
    from dnnlib.util import atomic_write

    GOLDEN_DIR.mkdir(exist_ok=True)
    payload = dict(format=FORMAT_VERSION, method=method, options=GOLDEN_RUNS[method], loop=LOOP_OVERRIDES,
                   steps=GOLDEN_STEPS, torch=torch.__version__)
    header = json.dumps(payload, sort_keys=True)[:-1]  # without the closing brace
    rows = ",\n".join(f"  {json.dumps(name)}: {json.dumps(entry, sort_keys=True)}" for name, entry in summary.items())
    with atomic_write(str(reference_path(method)), "w") as f:  # one line per tensor: a re-recording diffs by tensor
        f.write(f'{header}, "tensors": {{\n{rows}\n}}}}\n')


# ----------------------------------------------------------------------------
# Command line.


def _datasets(work: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    source = REPO_ROOT / "datasets" / "emoji-smileys"
    return build_zip(source, work / "emoji32.zip"), build_labelled_zip(source, work / "labelled")


def record(methods: list[str]) -> None:
    with tempfile.TemporaryDirectory() as work, torch_settings(threads=1):
        data, labelled = _datasets(pathlib.Path(work))
        for method in methods:
            write_reference(method, summarize(train(golden_options(method, data, labelled))))
            print(f"recorded {reference_path(method).relative_to(REPO_ROOT)}")


def measure(methods: list[str], repeats: int, save: Optional[str] = None) -> None:
    """Print, per method, the worst deviation from a 1-thread run of: repeats, 2 threads, oneDNN off
    (noise the tolerance must cover), and of lr x (1 + 1e-3), one more step, seed 1 (changes it must catch)."""
    with tempfile.TemporaryDirectory() as work:
        data, labelled = _datasets(pathlib.Path(work))
        for method in methods:
            opts = golden_options(method, data, labelled)
            with torch_settings(threads=1):
                base = summarize(train(opts))
            rows = []
            for label, threads, mkldnn in [*((f"repeat {i + 1}", 1, True) for i in range(repeats)),
                                           ("2 threads", 2, True), ("oneDNN off", 1, False),
                                           ("oneDNN off, 2 threads", 2, False)]:
                with torch_settings(threads=threads, mkldnn=mkldnn):
                    rows.append((label, summarize(train(opts))))
            with torch_settings(threads=1):
                for label, changed in perturbations(method, data, labelled):
                    rows.append((label, changed))
            for label, summary in rows:
                (name, value), (moved_name, moved) = worst(deviations(base, summary)), worst(moved_deviations(base, summary))
                print(f"{method:10s} {label:24s} values {value:9.3g} ({name})   moved {moved:9.3g} ({moved_name})",
                      flush=True)
            if save is not None:  # every summary, to study other deviation measures without training again
                os.makedirs(save, exist_ok=True)
                with open(os.path.join(save, f"{method}.json"), "w") as f:
                    json.dump(dict(base=base, **dict(rows)), f)


def perturbations(method: str, data: pathlib.Path, labelled: pathlib.Path) -> Iterator[tuple[str, dict]]:
    opts = golden_options(method, data, labelled)
    for key in ("G_opt_kwargs", "D_opt_kwargs"):
        opts[key].lr *= 1 + 1e-3
    yield "lr x (1 + 1e-3)", summarize(train(opts))
    yield "one more step", summarize(train(golden_options(method, data, labelled), steps=GOLDEN_STEPS + 1))
    yield "seed 1", summarize(train(golden_options(method, data, labelled, extra=("--seed=1",))))


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=sorted(GOLDEN_RUNS), action="append",
                        help="record (or measure) only this method; repeatable [default: all]")
    parser.add_argument("--measure", action="store_true", help="print deviations instead of recording")
    parser.add_argument("--repeats", type=int, default=2, help="with --measure: identical reruns per method")
    parser.add_argument("--save", metavar="DIR", help="with --measure: also write every summary to DIR/<method>.json")
    args = parser.parse_args(argv)
    methods = args.method or list(GOLDEN_RUNS)
    if args.measure:
        measure(methods, args.repeats, args.save)
    else:
        record(methods)


if __name__ == "__main__":
    main()
