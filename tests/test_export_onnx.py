"""export.py --format=onnx: the generator graph matches ours in onnxruntime; the docs example runs without torch.

Each ONNX export takes about ten seconds on one core, so the exports are made once per module and shared.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import export  # noqa: E402
import generate  # noqa: E402
from test_network_pickle import make_G  # noqa: E402
from training import network_pickle, onnx_export  # noqa: E402

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "export.md"
# Measured worst case on these networks: 4e-6 (float32 reordering); 1e-4 is the bound.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Two exports through the CLI: unconditional (psi 0.7, const) and conditional resnet (psi 1, none)."""
    root = tmp_path_factory.mktemp("onnx")
    made = {}
    for name, c_dim, architecture, extra in (("uncond", 0, "skip", ["--trunc=0.7"]),
                                             ("cond", 2, "resnet", ["--which=G", "--noise-mode=none"])):
        G = make_G(c_dim=c_dim, architecture=architecture)
        pkl = root / f"{name}.pkl"
        network_pickle.save_network_pkl(str(pkl), dict(G=G, G_ema=G, training_set_kwargs=None))
        out = root / f"{name}.onnx"
        result = CliRunner().invoke(export.main, [f"--network={pkl}", "--format=onnx", f"--out={out}", *extra])
        assert result.exit_code == 0, result.output
        made[name] = dict(G=G, pkl=pkl, out=out, output=result.output)
    return made


def test_graph_matches_ours_on_any_batch_size(exports):
    for name, psi, noise_mode in (("uncond", 0.7, "const"), ("cond", 1.0, "none")):
        G, out = exports[name]["G"], exports[name]["out"]
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        for seeds in ([11], [20, 21, 22]):  # batch sizes the export never saw
            inputs = onnx_export.seed_inputs(G, tuple(seeds))
            assert [i.name for i in session.get_inputs()] == list(inputs)
            theirs = session.run(["img"], inputs)[0]
            c = torch.from_numpy(inputs["c"]) if "c" in inputs else None
            with torch.no_grad():
                ours = G(torch.from_numpy(inputs["z"]), c, truncation_psi=psi, noise_mode=noise_mode).numpy()
            assert theirs.shape == (len(seeds), 3, 16, 16)
            assert np.abs(theirs - ours).max() <= TOLERANCE
    assert "onnxruntime check: max abs difference" in exports["uncond"]["output"]


def test_metadata_records_what_was_fixed_at_export(exports):
    meta = {p.key: p.value for p in onnx.load(str(exports["uncond"]["out"])).metadata_props}
    assert meta["format"] == "fakeclr-onnx-generator"
    assert (meta["truncation_psi"], meta["noise_mode"], meta["z_dim"], meta["c_dim"]) == ("0.7", "const", "8", "0")
    assert meta["img_resolution"] == "16" and meta["source"] == "uncond.pkl"
    measured = float(re.search(r"max abs error ([0-9.e+-]+)", meta["check"]).group(1))
    assert measured <= TOLERANCE
    cond = {p.key: p.value for p in onnx.load(str(exports["cond"]["out"])).metadata_props}
    assert (cond["truncation_psi"], cond["noise_mode"], cond["c_dim"]) == ("1.0", "none", "2")


def test_docs_example_runs_without_torch_and_gives_generates_images(exports, tmp_path):
    snippet = DOCS.read_text().split("<!-- onnx-example -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "G.onnx").write_bytes(exports["uncond"]["out"].read_bytes())
    no_torch = "import sys\nsys.modules['torch'] = None  # any import of torch now fails\n"
    run = subprocess.run([sys.executable, "-c", no_torch + snippet], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    result = CliRunner().invoke(generate.main, [f"--network={exports['uncond']['pkl']}", "--seeds=0-3", "--trunc=0.7",
                                                f"--outdir={tmp_path / 'gen'}"])
    assert result.exit_code == 0, result.output
    from PIL import Image
    for seed in range(4):
        ours = np.asarray(Image.open(tmp_path / "gen" / f"seed{seed:04d}.png"), dtype=np.int16)
        theirs = np.asarray(Image.open(tmp_path / f"seed{seed:04d}.png"), dtype=np.int16)
        assert np.abs(ours - theirs).max() <= 1  # a 4e-6 difference can cross one rounding step


def test_a_graph_that_disagrees_is_not_written(exports, tmp_path, monkeypatch):
    wrong = exports["cond"]["out"].read_bytes()  # a valid graph, of another network
    monkeypatch.setattr(onnx_export, "export_bytes", lambda G, psi, mode: wrong)
    G = make_G(c_dim=2, architecture="skip", seed=9)
    pkl = tmp_path / "other.pkl"
    network_pickle.save_network_pkl(str(pkl), dict(G_ema=G))
    out = tmp_path / "G.onnx"
    result = CliRunner().invoke(export.main, [f"--network={pkl}", "--format=onnx", f"--out={out}"])
    assert result.exit_code == 1 and "onnxruntime differs from PyTorch by" in result.output
    assert "not written" in result.output and not out.exists()
    assert not list(tmp_path.glob(".G.onnx*"))  # no temp file left either


def test_refusals_before_any_work(tmp_path):
    G = make_G()
    pkl = tmp_path / "g.pkl"
    network_pickle.save_network_pkl(str(pkl), dict(G_ema=G))
    out = tmp_path / "G.onnx"
    for extra, message in ((["--which=D"], "--which=D: ONNX export takes one generator"),
                           (["--which=all"], "--which=all: ONNX export takes one generator"),
                           (["--noise-mode=random"], "'random' is not one of 'const', 'none'")):
        result = CliRunner().invoke(export.main, [f"--network={pkl}", "--format=onnx", f"--out={out}", *extra])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Loading networks" not in result.output and not out.exists()


def test_an_exporter_failure_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::mystery\nlong traceback text")
    monkeypatch.setattr(torch.onnx, "export", fail)
    pkl = tmp_path / "g.pkl"
    network_pickle.save_network_pkl(str(pkl), dict(G_ema=make_G()))
    out = tmp_path / "G.onnx"
    result = CliRunner().invoke(export.main, [f"--network={pkl}", "--format=onnx", f"--out={out}"])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "long traceback" not in result.output
    assert "torch.onnx could not export this generator (RuntimeError: unsupported operator aten::mystery)" in errors[0]
    assert not out.exists()
