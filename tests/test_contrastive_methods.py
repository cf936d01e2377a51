"""--method presets, upstream flag mapping, dataset-dependent defaults and option errors."""

import json

import pytest

from training.method_registry import method_names
from training.contrastive.presets import (FAKECLR_CODE_COMPAT, MethodOptions, contrastive_enabled,
                                         default_queue_length, describe_method, discriminator_label_dim,
                                         implicit_method_note, resolve_method)
from training.contrastive.queue import TimestampedQueue


def _resolve(method, overrides=None, dataset_size=169, mirror=True, batch=4, **kwargs):
    warnings = []
    opts = resolve_method(method, overrides, dataset_size=dataset_size, mirror=mirror, batch=batch,
                          warn=warnings.append, **kwargs)
    return opts, warnings


def test_presets():
    ada, _ = _resolve("ada")
    assert not ada.ada_linear and not contrastive_enabled(ada) and ada.fqs is None
    assert _resolve("adalinear")[0].ada_linear
    fake, _ = _resolve("fakeclr")
    assert (fake.ada_linear, fake.fake_head, fake.real_head) == (True, True, False)
    assert (fake.forgetting_mode, fake.fqs_schedule, fake.noise_mode, fake.noise_scale, fake.noise_clamp) == \
        ("paper", "linear", "relative", 0.1, 3.0)
    assert (fake.lambda_D, fake.lambda_G, fake.tau, fake.tau_m, fake.head_momentum) == (1.0, 0.1, 0.2, 0.01, 0.999)
    ins, _ = _resolve("insgen")
    assert (ins.real_head, ins.fake_head, ins.noise_mode, ins.noise_scale, ins.enqueue, ins.forgetting_mode) == \
        (True, True, "fixed", 0.15, "query_momentum", "off")
    cg, _ = _resolve("contragan")
    assert (cg.cond_loss, cg.tau_2c, cg.lambda_2c, cg.d_embed_dim) == ("2c", 1.0, 1.0, 512)
    assert set(method_names(addons=False)) == {"ada", "adalinear", "insgen", "fakeclr", "contragan"}


def test_fakeclr_code_compat_preset():
    opts, _ = _resolve("fakeclr", code_compat=True)
    for name, value in FAKECLR_CODE_COMPAT.items():
        assert getattr(opts, name) == value
    assert opts.forgetting_mode == "code_constant" and opts.cl_independent_mixing and opts.g_cl_forgetting
    with pytest.raises(ValueError, match="--fakeclr-code-compat"):
        _resolve("insgen", code_compat=True)


def test_default_queue_lengths_follow_dataset_size_and_mirror():
    assert default_queue_length(169, False) == 8 and default_queue_length(169, True) == 16
    assert default_queue_length(19, True) == 0
    opts, warnings = _resolve("fakeclr", dataset_size=2000, mirror=True, batch=64)
    assert opts.fqs == 256 and opts.fqs_min == 100 and warnings == []  # start >= 4 batches, end half the 5 % rule
    opts, warnings = _resolve("fakeclr", dataset_size=70000, mirror=False, batch=64)
    assert (opts.fqs, opts.fqs_min, warnings) == (3500, 1750, [])
    opts, warnings = _resolve("fakeclr", code_compat=True, dataset_size=2000, mirror=True, batch=64)
    assert (opts.fqs, opts.fqs_schedule) == (200, "fixed")  # the code's fixed queue keeps the 5 % rule
    opts, warnings = _resolve("insgen", dataset_size=1000, mirror=False, batch=64)
    assert opts.fqs == opts.rqs == 65  # 50 <= batch: clamped to batch + 1
    assert len(warnings) == 2 and "global batch (64)" in warnings[0] and "using 65" in warnings[0]


def test_explicit_queue_lengths_and_floor():
    opts, warnings = _resolve("fakeclr", {"fqs": 300, "fqs_min": 120}, batch=64)
    assert (opts.fqs, opts.fqs_min, warnings) == (300, 120, [])
    opts, warnings = _resolve("fakeclr", {"fqs": 10}, batch=64)
    assert opts.fqs == 65 and opts.fqs_min == 65 and "--fqs=10" in warnings[0]
    with pytest.raises(ValueError, match="--fqs_min=400: must not exceed --fqs=300"):
        _resolve("fakeclr", {"fqs": 300, "fqs_min": 400}, batch=64)


def test_upstream_flags():
    assert not contrastive_enabled(_resolve("fakeclr", {"no_fakeclr": True})[0])
    off, _ = _resolve("insgen", {"no_insgen": True, "ada_linear": True})
    assert not contrastive_enabled(off) and off.ada_linear
    assert not _resolve("fakeclr", {"no_cl_on_g": True})[0].cl_on_g
    assert _resolve("fakeclr", {"no_cl_on_g": False})[0].cl_on_g
    opts, _ = _resolve("insgen", {"rqs": 50, "fqs": 70, "no_insgen": None})  # None = flag not given
    assert (opts.rqs, opts.fqs, opts.real_head) == (50, 70, True)


@pytest.mark.parametrize("overrides, match", [
    ({"tau": 0}, "--tau=0: must be > 0"),
    ({"forgetting_mode": "recent"}, "--forgetting_mode='recent': use one of paper, code_constant, off"),
    ({"fqs_schedule": "cosine"}, "--fqs_schedule"),
    ({"lambda_G": -1}, "--lambda_G=-1: must be >= 0"),
    ({"head_momentum": 1.0}, r"--head_momentum=1.0: must lie in \[0, 1\)"),
    ({"noise_clamp": 0}, "--noise_clamp=0"),
    ({"bogus": 1}, "--bogus: not a method option"),
])
def test_bad_options_fail_with_one_line_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        _resolve("fakeclr", overrides)


def test_unknown_method():
    with pytest.raises(ValueError, match="--method: unknown method 'stylegan3'; use one of ada, adalinear"):
        _resolve("stylegan3")


def test_noise_scale_default_follows_mode():
    assert _resolve("fakeclr", {"noise_mode": "fixed"})[0].noise_scale == 0.15
    assert _resolve("insgen", {"noise_mode": "relative"})[0].noise_scale == 0.1
    assert _resolve("fakeclr", {"noise_scale": 0.2})[0].noise_scale == 0.2


def test_options_round_trip_through_json():
    opts, _ = _resolve("fakeclr", {"tau_m": 0.001, "noise_clamp": "none"})
    restored = MethodOptions.from_dict(json.loads(json.dumps(opts.to_dict())))
    assert restored == opts and restored.noise_clamp is None
    with pytest.raises(ValueError, match="unknown key"):
        MethodOptions.from_dict({**opts.to_dict(), "extra": 1})


# -- issue 16: queue that shrinks on few-shot data, --forgetting, method lines ------

def test_few_shot_queue_really_shrinks():
    """100 images, --mirror, batch 64: the 5 % rule (10) is below a batch; the old defaults gave 65 -> 65."""
    opts, warnings = _resolve("fakeclr", dataset_size=100, mirror=True, batch=64)
    assert (opts.fqs, opts.fqs_min, opts.fqs_schedule, warnings) == (256, 65, "linear", [])
    queue = TimestampedQueue(opts.fqs, 8, opts.fqs_schedule, opts.fqs_min)
    assert queue.length_at(0.0) == 256 > queue.length_at(0.5) == 160 > queue.length_at(1.0) == 65
    lines = describe_method(opts, total_kimg=10000)
    assert "fake queue: 256 → 65 over 10000 kimg (linear)" in lines
    explicit, _ = _resolve("fakeclr", {"fqs": 300, "fqs_min": 100}, dataset_size=100, mirror=True, batch=64)
    assert (explicit.fqs, explicit.fqs_min) == (300, 100)  # --fqs / --fqs_min still override


@pytest.mark.parametrize("value, mode", [("paper", "paper"), ("code", "code_constant"), ("off", "off"),
                                         ("code_constant", "code_constant")])
def test_forgetting_option_names_the_modes(value, mode):
    assert _resolve("fakeclr", {"forgetting": value})[0].forgetting_mode == mode
    assert _resolve("fakeclr", {"forgetting_mode": value})[0].forgetting_mode == mode
    assert _resolve("fakeclr")[0].forgetting_mode == "paper"  # today's default until the benchmark (issue 20)


def test_forgetting_option_errors():
    with pytest.raises(ValueError, match="--forgetting='recent': use one of paper, code, off"):
        _resolve("fakeclr", {"forgetting": "recent"})
    with pytest.raises(ValueError, match="contradicts --forgetting_mode=off"):
        _resolve("fakeclr", {"forgetting": "code", "forgetting_mode": "off"})


def test_query_view_and_contragan_mode_options():
    assert _resolve("fakeclr")[0].cl_query_view == "shared"
    assert _resolve("fakeclr", {"cl_query_view": "independent"})[0].cl_query_view == "independent"
    with pytest.raises(ValueError, match="--cl_query_view='both': use one of shared, independent"):
        _resolve("fakeclr", {"cl_query_view": "both"})
    studio, projection = _resolve("contragan")[0], _resolve("contragan", {"contragan_mode": "projection"})[0]
    assert (discriminator_label_dim(studio, 10), discriminator_label_dim(projection, 10)) == (0, 10)
    assert discriminator_label_dim(_resolve("ada")[0], 10) == 10


def test_contrastive_flags_without_method_are_named_once():
    overrides = {"ada_linear": True, "fqs": None}
    opts, _ = _resolve("ada", overrides)
    note = implicit_method_note(None, overrides, opts)
    assert note.startswith("Method: ADA-Linear without a contrastive head (--ada_linear given without --method")
    assert "--method=fakeclr" in note
    assert implicit_method_note("adalinear", overrides, opts) is None
    assert implicit_method_note(None, {"fqs": None}, opts) is None
    assert "(--fqs --no_cl_on_g given" in implicit_method_note(None, {"fqs": 300, "no_cl_on_g": True}, _resolve("ada")[0])
    assert "(--rqs --tau_m given" in implicit_method_note(None, {"tau_m": 0.001, "rqs": 80}, _resolve("ada")[0])


def test_methods_run_no_collective_and_step_no_optimiser():
    """The training loop owns every step and collective (training/phase_steps.py): no method file calls
    torch.distributed or training.distributed, or steps an optimiser (it hands them to the loop)."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "training"
    files = sorted((root / "methods").glob("*.py")) + sorted((root / "contrastive").glob("*.py"))
    assert len(files) >= 10  # methods: ada, apa, diffaugment, lecam; contrastive: hooks, head, queue, ...
    for path in files:
        text = path.read_text()
        for forbidden in ("torch.distributed", "training import distributed", "training.distributed", ".step("):
            assert forbidden not in text, f"{path.name} contains {forbidden!r}"
