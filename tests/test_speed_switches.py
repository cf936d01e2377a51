"""Speed switches (training/speed.py) against the plain path: same losses from the same seeds.

Each switch runs the first training step (all four phases: Gmain, Greg, Dmain, Dreg) of the `tiny`
preset (16 px emoji images, batch 4, FakeCLR, so the contrastive hook and the augmentation pipe run
too) through train.py's option resolution and the real Trainer, from the same seed as the plain
run, and compares every reported loss statistic and each phase's gradient. Tolerances:
channels_last, compile and fused Adam 1e-5 (relative to max(1, |value|)) for the losses and 1e-5
(relative norm) for each phase's gradient; bf16 autocast 5e-2 and 0.1 (bfloat16 keeps 8 mantissa
bits). The G/D optimiser step is skipped (gradients recorded) except in the fused-Adam test, which
compares the parameters after the steps (abs 1e-4). torch.compile uses the 'aot_eager' backend
here: inductor would spend minutes compiling C++ on a 2-core CPU; the switch, the phase selection
and the fallback are the same code. CUDA-only aspects (FP16 + NHWC, fused Adam on CUDA, timings)
are in docs/performance.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 1  # step 0 runs Gmain, Greg, Dmain and Dreg (a 2nd step would compare Adam's sign-like first update)


@pytest.fixture(scope="module")
def data16(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("speed") / "emoji16.zip")
    subprocess.run([sys.executable, os.path.join(ROOT, "dataset_tool.py"), f"--source={ROOT}/datasets/emoji-smileys",
                    f"--dest={path}", "--resolution=16x16", "--max-images=32"], check=True, stdout=subprocess.DEVNULL)
    return path


def _options(data: str, outdir: str, *flags: str):
    import train

    ctx = train.main.make_context("train.py", [f"--outdir={outdir}", f"--data={data}", "--cfg=tiny", "--method=fakeclr",
                                               "--metrics=none", "--workers=1", "--kimg=1", "--batch=4", *flags])
    params = dict(ctx.params)
    params.pop("dry_run")
    opts, _ = train.resolve_options(params)
    opts.run_dir = None
    return opts


def _train(data: str, outdir: str, *flags: str, steps: int = STEPS, update: bool = False):
    """(loss statistics, per-phase gradients, G+D parameters, trainer) after `steps` steps with `flags`.

    update=False records each phase's gradients and skips the G/D optimiser step, so every phase
    sees the same networks in both runs (one Adam step is sign-like: it would amplify rounding).
    """
    from torch_utils import training_stats
    from training.training_loop import Trainer

    training_stats.reset_all()
    trainer = Trainer(_options(data, outdir, *flags), rank=0, device=torch.device("cpu"), abort_fn=None)
    trainer.setup()
    grads, current = {}, []
    run_phase = trainer.run_phase

    def tracked_run_phase(phase, *args):
        current[:] = [phase]
        run_phase(phase, *args)

    trainer.run_phase = tracked_run_phase
    for opt in {id(phase.opt): phase.opt for phase in trainer.phases}.values():  # Xmain and Xreg share one
        def record(step=opt.step):
            phase = current[0]
            grads[phase.name] = torch.cat([p.grad.flatten() for p in phase.module.parameters() if p.grad is not None])
            if update:
                step()
        opt.step = record
    for _ in range(steps):
        trainer.train_step()
    trainer.collector.update()
    losses = {name: value["mean"] for name, value in trainer.collector.as_dict().items() if name.startswith("Loss/")}
    params = {f"{net}.{name}": p.detach().clone().contiguous()
              for net in ("G", "D") for name, p in getattr(trainer, net).named_parameters()}
    return losses, grads, params, trainer


@pytest.fixture(scope="module")
def plain(data16, tmp_path_factory):
    return _train(data16, str(tmp_path_factory.mktemp("plain")))


def _assert_close(run, reference, tol: float, grad_tol: float | None = None) -> None:
    """Every loss statistic within tol x max(1, |value|); each phase's gradient within grad_tol (relative norm)."""
    losses, ref_losses = run[0], reference[0]
    assert losses.keys() == ref_losses.keys()
    assert {"Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty", "Loss/pl_penalty", "Loss/CL/fake_D"} <= ref_losses.keys()
    for name, ref in ref_losses.items():
        assert abs(losses[name] - ref) <= tol * max(1.0, abs(ref)), (name, losses[name], ref)
    if grad_tol is not None:
        assert run[1].keys() == reference[1].keys() == {"Gmain", "Greg", "Dmain", "Dreg"}
        for name, ref in reference[1].items():
            assert float((run[1][name] - ref).norm() / ref.norm()) <= grad_tol, name


def test_channels_last_matches_plain(data16, plain, tmp_path):
    run = _train(data16, str(tmp_path), "--channels-last=True")
    trainer = run[3]
    assert trainer.G.synthesis.b16.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert trainer.D.b16.all_channels_last and trainer.G_ema.synthesis.b8.all_channels_last
    _assert_close(run, plain, 1e-5, grad_tol=1e-5)


def test_bf16_autocast_close_to_plain(data16, plain, tmp_path):
    run = _train(data16, str(tmp_path), "--bf16=True")
    trainer = run[3]
    trainer.phase_speed.enter("Dmain")
    with trainer.loss.forward_context():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    trainer.phase_speed.enter("Dreg")  # the double-backward phases stay FP32
    with trainer.loss.forward_context():
        assert not torch.is_autocast_enabled("cpu")
    _assert_close(run, plain, 5e-2, grad_tol=0.1)


def test_compile_aot_eager_matches_plain(data16, plain, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would warn: fail instead
        run = _train(data16, str(tmp_path), "--compile=True", "--compile-backend=aot_eager")
    trainer = run[3]
    assert all(m.failed is None for m in trainer.phase_speed.fast.values())
    trainer.phase_speed.enter("Gmain")
    assert trainer.loss.G_synthesis is trainer.phase_speed.fast["G_synthesis"]
    trainer.phase_speed.enter("Greg")
    assert trainer.loss.G_synthesis is trainer.G.synthesis
    _assert_close(run, plain, 1e-5, grad_tol=1e-5)


def test_compile_failure_falls_back_to_eager():
    from training import speed

    class Broken(torch.nn.Module):
        def forward(self, x):
            return x * 2

    with pytest.warns(RuntimeWarning, match="running it eager"):
        wrapped = speed.SafeCompiled(Broken(), backend="no-such-backend")
        out = wrapped(torch.ones(2))
    assert wrapped.failed and torch.equal(out, torch.full([2], 2.0))
    assert torch.equal(wrapped(torch.ones(2)), torch.full([2], 2.0))  # no second warning, still eager


@pytest.mark.skipif(not __import__("training.speed", fromlist=["x"]).fused_adam_supported(torch.device("cpu")),
                    reason="this torch build has no fused Adam on the CPU")
def test_fused_adam_matches_plain(data16, tmp_path):
    reference = _train(data16, str(tmp_path / "foreach"), update=True)
    run = _train(data16, str(tmp_path / "fused"), "--fused-adam=True", update=True)
    assert all(phase.opt.defaults.get("fused") for phase in run[3].phases)
    assert not any(phase.opt.defaults.get("fused") for phase in reference[3].phases)
    _assert_close(run, reference, 1e-5, grad_tol=1e-5)
    # After real Adam steps of all four phases. Fused and foreach Adam round differently; where a
    # gradient element is ~0, Adam's sign-like first steps amplify that. Measured worst element: 1.5e-5 before,
    # 1.07e-4 since the output gains fold into the weights (2026-12-05: one element of D.b8.skip.weight, all
    # others <= 8.6e-5), so 2.5e-4 (2.3x); a wrong lr or betas moves elements by a fraction of lr = 2.4e-3.
    for name, ref in reference[2].items():
        torch.testing.assert_close(run[2][name], ref, rtol=0, atol=2.5e-4, msg=name)


def test_switches_default_off_and_reach_the_options(data16, tmp_path):
    plain_opts = _options(data16, str(tmp_path))
    assert not {"bf16", "channels_last", "compile", "compile_backend", "fused_adam"} & plain_opts.keys()
    opts = _options(data16, str(tmp_path), "--bf16=True", "--channels-last=True", "--compile=True",
                    "--compile-backend=aot_eager", "--fused-adam=True")
    assert (opts.bf16, opts.channels_last, opts.compile, opts.compile_backend, opts.fused_adam) == (
        True, True, True, "aot_eager", True)


def test_label_copy_and_stats_need_no_host_sync(monkeypatch):
    """The per-step paths the audit fixed: labels go to the device non-blocking; stats stay on device."""
    from torch_utils import training_stats
    from training import speed

    calls = []
    original = torch.Tensor.to

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("non_blocking", False))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    speed.to_device(torch.zeros(2, 3), torch.device("cpu"))
    assert calls == [True]
    monkeypatch.undo()
    training_stats.reset_all()
    value = torch.arange(4.0)
    training_stats.report("Test/x", value)
    assert training_stats._counters["Test/x"][value.device].device == value.device
