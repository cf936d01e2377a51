"""The generator as an ONNX graph: z (and c) in, image out, checked with onnxruntime before it is written.

The graph is G(z, c, truncation_psi=psi, noise_mode=mode) with psi and mode fixed at export and recorded in the
model's metadata (`metadata_props`). It is traced on the CPU in float32 with the reference ops (the CUDA plugins
cannot be exported) and with the unfused modulated convolution, whose weights do not depend on the batch, so the
batch dimension stays free. Random noise is not offered: an RNG inside a graph does not reproduce across runtimes.
Before anything is written, onnxruntime runs the graph on `CHECK_SEEDS` and must match our generator within
`CHECK_TOLERANCE`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any, Iterator

import numpy as np
import torch

from dnnlib import util

FORMAT = "fakeclr-onnx-generator"
NOISE_MODES = ("const", "none")
CHECK_SEEDS = tuple(range(8))
CHECK_TOLERANCE = 1e-4  # the bound; the tiny test networks measure about 4e-6
INSTALL_HINT = "install the export extra (pip install '.[export]') for ONNX export"


class OnnxGenerator(torch.nn.Module):
    """G with psi and noise mode bound: forward(z[, c]) -> image [N, C, H, W] in [-1, 1] (float32)."""

    def __init__(self, G: torch.nn.Module, truncation_psi: float, noise_mode: str):
        super().__init__()
        self.G, self.truncation_psi, self.noise_mode = G, float(truncation_psi), noise_mode

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.G(z, c, truncation_psi=self.truncation_psi, noise_mode=self.noise_mode, fused_modconv=False)


def seed_inputs(G: Any, seeds: tuple[int, ...]) -> dict[str, np.ndarray]:
    """generate.py's latents (z = RandomState(seed).randn(z_dim)); labels cycle through the classes."""
    inputs = {"z": np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds]).astype(np.float32)}
    if G.c_dim > 0:
        inputs["c"] = np.eye(G.c_dim, dtype=np.float32)[[s % G.c_dim for s in seeds]]
    return inputs


def metadata(G: Any, truncation_psi: float, noise_mode: str, source: str, max_error: float) -> dict[str, str]:
    return {
        "format": FORMAT, "truncation_psi": repr(float(truncation_psi)), "noise_mode": noise_mode,
        "z_dim": str(G.z_dim), "c_dim": str(G.c_dim), "img_resolution": str(G.img_resolution),
        "img_channels": str(G.img_channels), "inputs": "z [N, z_dim]" + (", c [N, c_dim] one-hot" if G.c_dim else ""),
        "output": "img [N, img_channels, img_resolution, img_resolution] float32, range about [-1, 1]",
        "source": source, "check": f"onnxruntime vs PyTorch on seeds {CHECK_SEEDS[0]}-{CHECK_SEEDS[-1]}: max abs "
                                    f"error {max_error:.3g} (limit {CHECK_TOLERANCE:g})",
    }


def _require_packages() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401 - torch.onnx's exporter needs it
    except ImportError as error:
        raise ValueError(f"the {error.name} package is not installed; {INSTALL_HINT}") from None
    return onnx, onnxruntime


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs optional-op registrations (torchvision), progress and tracer warnings; the CLI prints its
    own progress, and the onnxruntime check is what tells whether the graph is right."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_bytes(G: torch.nn.Module, truncation_psi: float, noise_mode: str) -> bytes:
    """The ONNX model of G, without metadata, as bytes."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise mode {noise_mode!r} cannot be exported; choose one of {', '.join(NOISE_MODES)}")
    wrapper = OnnxGenerator(G.eval().requires_grad_(False).cpu(), truncation_psi, noise_mode).eval()
    example = {name: torch.from_numpy(value) for name, value in seed_inputs(G, CHECK_SEEDS[:2]).items()}
    batch = torch.export.Dim("batch")
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(wrapper, tuple(example.values()), input_names=list(example),
                                        output_names=["img"], dynamic_shapes={name: {0: batch} for name in example},
                                        dynamo=True, verbose=False)
    except Exception as error:  # noqa: BLE001 - the exporter fails in many ways; the CLI prints one line
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"torch.onnx could not export this generator ({type(error).__name__}: {first:.200}); "
                         f"not written (please report this network's options)") from None
    return program.model_proto.SerializeToString()


def check_with_onnxruntime(model: bytes, G: torch.nn.Module, truncation_psi: float, noise_mode: str) -> float:
    """Max abs difference between onnxruntime and our G on CHECK_SEEDS (ValueError above the tolerance)."""
    _, onnxruntime = _require_packages()
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    inputs = seed_inputs(G, CHECK_SEEDS)
    theirs = session.run(["img"], inputs)[0]
    with torch.no_grad():
        c = torch.from_numpy(inputs["c"]) if "c" in inputs else None
        ours = G(torch.from_numpy(inputs["z"]), c, truncation_psi=truncation_psi, noise_mode=noise_mode).numpy()
    if theirs.shape != ours.shape:
        raise ValueError(f"the ONNX graph returns shape {theirs.shape}, PyTorch {ours.shape}; not written")
    error = float(np.abs(theirs - ours).max())
    if not error <= CHECK_TOLERANCE:
        raise ValueError(f"onnxruntime differs from PyTorch by {error:.3g} (limit {CHECK_TOLERANCE:g}) on seeds "
                         f"{CHECK_SEEDS[0]}-{CHECK_SEEDS[-1]}; not written (please report this network's options)")
    return error


def write_onnx(path: str, G: torch.nn.Module, truncation_psi: float, noise_mode: str, source: str) -> float:
    """Export, check, add metadata, write atomically; returns the measured max abs error."""
    onnx, _ = _require_packages()
    model = export_bytes(G, truncation_psi, noise_mode)
    error = check_with_onnxruntime(model, G, truncation_psi, noise_mode)
    proto = onnx.load_from_string(model)
    onnx.helper.set_model_props(proto, metadata(G, truncation_psi, noise_mode, source, error))
    final = proto.SerializeToString()
    with util.atomic_write(path, "wb") as f:
        f.write(final)
    return error
