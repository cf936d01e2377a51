"""Inputs and outputs shared by the latent-space tools (projector.py, style_mixing.py, the continuity report).

Networks are read with our safe loader (nothing in a pickle is executed); every bad input becomes a one-line
click error naming the option, and every file is written through a temp file (dnnlib.util.atomic_write).
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from typing import Any, Callable, Iterator

import click
import numpy as np
import PIL.Image
import torch

from dnnlib import util
from torch_utils import load_budget
from training import finite_checks


@contextlib.contextmanager
def output_errors(option: str = "--outdir") -> Iterator[None]:
    """A failed write (disk full, no permission) becomes one line naming the file instead of a traceback."""
    try:
        yield
    except OSError as err:
        where = err.filename if err.filename is not None else option
        raise click.ClickException(f"{where}: {(err.strerror or str(err)).lower()}; check {option}, its "
                                   "permissions and the free disk space") from None


def check_outdir(outdir: str) -> None:
    """--outdir is (or can become) a writable directory: checked before minutes of optimisation, not after."""
    from training.config import ConfigError
    from training.preflight import check_outdir as check_writable_outdir

    try:
        check_writable_outdir(outdir)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


def load_vgg16(device: torch.device, source: str | None) -> Any:
    """The VGG16/LPIPS detector (--vgg16, else $FAKECLR_VGG16, else the installed weights), or one line saying
    how to get the weights."""
    from metrics import detectors

    try:
        return detectors.get_vgg16(device, source)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise click.ClickException(f"VGG16: {err}") from None


def pick_device(name: str | None = None) -> torch.device:
    """--device=cpu|cuda, or CUDA when available."""
    if name is None:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise click.ClickException("--device=cuda: no CUDA device is visible; use --device=cpu")
    return torch.device(name)


def load_generator(network_pkl: str, device: torch.device, option: str = "--network") -> Any:
    """G_ema of a snapshot (ours or upstream's), in eval mode without gradients, on the device."""
    from training.network_pickle import NetworkPickleError, load_network_pkl  # heavy import kept out of --help

    if not util.is_url(network_pkl) and not os.path.exists(network_pkl):
        raise click.ClickException(f"{option}={network_pkl}: no such file; give a network-snapshot-*.pkl")
    try:
        G = load_network_pkl(network_pkl)["G_ema"]
    except NetworkPickleError as err:  # already `<file>: <what is wrong>; <how to fix>`
        raise click.ClickException(str(err)) from None
    except (OSError, ValueError, KeyError) as err:
        raise click.ClickException(f"{option}={network_pkl}: not a readable network snapshot ({err}); "
                                   "give a network-snapshot-*.pkl written by train.py or upstream") from None
    G = G.eval().requires_grad_(False).to(device)
    require_finite(lambda: finite_checks.require_finite_generator(G, network_pkl))
    return G


def require_finite(check: Callable[[], Any]) -> Any:
    """Run a training.finite_checks check; a NonFiniteError becomes the one-line click error it already is."""
    try:
        return check()
    except finite_checks.NonFiniteError as err:
        raise click.ClickException(str(err)) from None


def finite_number(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click callback for float options such as --trunc: NaN and infinities are refused."""
    if value is not None:
        option = param.opts[0] if param.opts else str(param.name)
        require_finite(lambda: finite_checks.require_finite_value(value, option))
    return value


def require_unconditional(G: Any, network_pkl: str, what: str) -> None:
    if G.c_dim != 0:
        raise click.ClickException(f"--network={network_pkl}: {what} needs an unconditional network, this one has "
                                   f"{G.c_dim} classes; use a network trained without --cond")


def load_target_image(path: str, resolution: int, channels: int, option: str = "--target") -> torch.Tensor:
    """uint8 [C, H, W]: the largest centred square of the image, resized (Lanczos) to the network's size."""
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO or device would block or never end
        raise click.ClickException(f"{option}={path}: not a regular file; give a PNG or JPEG")
    try:
        image = PIL.Image.open(path)
        image = image.convert("L" if channels == 1 else "RGB")
    except PIL.Image.DecompressionBombError:  # PIL refuses from the header alone, before allocating
        raise click.ClickException(f"{option}={path}: the image is too large to decode safely (over "
                                   f"{2 * PIL.Image.MAX_IMAGE_PIXELS:,} pixels); give a smaller PNG or JPEG") from None
    except (OSError, ValueError, SyntaxError) as err:  # SyntaxError: PIL's "broken PNG file"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise click.ClickException(f"{option}={path}: cannot read the image ({reason}); give a PNG or JPEG") from None
    w, h = image.size
    s = min(w, h)
    image = image.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    image = image.resize((resolution, resolution), PIL.Image.LANCZOS)
    array = np.asarray(image, dtype=np.uint8).reshape(resolution, resolution, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def to_uint8_hwc(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> [N, H, W, C] uint8 (x * 127.5 + 128, clamped), as upstream saves images."""
    return (img.detach().permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


def save_png(array: np.ndarray, path: str) -> None:
    """[H, W, C] uint8 (C = 1 or 3) -> PNG, atomically."""
    image = PIL.Image.fromarray(array[:, :, 0], "L") if array.shape[2] == 1 else PIL.Image.fromarray(array, "RGB")
    with util.atomic_write(path, "wb") as f:
        image.save(f, format="PNG")


def save_projected_w(ws: torch.Tensor, path: str) -> None:
    """projected_w.npz with key 'w' [N, num_ws, w_dim], the file `generate.py --projected-w` reads."""
    with util.atomic_write(path, "wb") as f:
        np.savez(f, w=ws.detach().cpu().numpy().astype(np.float32))


def read_projected_w(path: str, num_ws: int, w_dim: int, option: str = "--projected-w") -> torch.Tensor:
    """float32 [N, num_ws, w_dim] from a projected_w.npz; anything else is one line naming the file.

    The archive is read within load_budget's limits (file size, array bytes, at most MAX_PROJECTED_FRAMES
    latents, headers checked before any data is read, no pickled objects). numpy's own messages are never
    relayed: some advise loading the file with allow_pickle.
    """
    frames = load_budget.MAX_PROJECTED_FRAMES
    expected = f"give an .npz with a float array 'w' of shape [N, {num_ws}, {w_dim}] with 1 <= N <= {frames}, " \
               f"as projector.py writes"

    def refuse(what: str) -> click.BadParameter:
        return click.BadParameter(f"{path}: {what}; {expected}", param_hint=option)

    def check_shape(shape: tuple) -> str | None:
        fits = len(shape) == 3 and tuple(shape[1:]) == (num_ws, w_dim) and shape[0] <= frames
        return None if fits else f"this network needs [N, {num_ws}, {w_dim}] with 1 <= N <= {frames}"

    if not zipfile.is_zipfile(path):
        raise refuse("a bare array, not an .npz archive" if _is_npy(path)
                     else "not a readable .npz file (empty, truncated or another format)")
    try:
        arrays = load_budget.read_npz(path, path, load_budget.MAX_PROJECTED_W_BYTES, expected_shapes={"w": check_shape})
    except (load_budget.OverBudget, OSError) as err:
        raise click.BadParameter(load_budget.first_line(err), param_hint=option) from None
    if "w" not in arrays:
        raise refuse(f"no array 'w' in it (it holds {', '.join(list(arrays)[:5]) or 'nothing'})")
    w = arrays["w"]
    if w.dtype.kind != "f":
        raise refuse(f"'w' holds {w.dtype} values, not floating-point numbers")
    if w.shape[0] == 0:
        raise refuse("'w' holds no latent (N is 0)")
    bad, total = finite_checks.count_non_finite(w)
    if bad:
        raise refuse(f"{bad} of {total} values are NaN or infinite")
    return torch.from_numpy(w.astype(np.float32))


def _is_npy(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


