"""Export a network pickle (ours or upstream's) for other tools: upstream-format pickle, safetensors or ONNX.

Examples:
  python export.py --network=network-snapshot-000200.pkl --format=safetensors --out=net.safetensors
  python export.py --network=network-snapshot-000200.pkl --format=upstream --out=net-upstream.pkl
  python export.py --network=network-snapshot-000200.pkl --format=onnx --trunc=0.7 --out=G.onnx

--which picks the networks: G_ema, G, D or all (default: all for safetensors and upstream, G_ema for onnx).
Nothing is written unless the whole export succeeded; an existing --out is kept unless --force is given.
Details and the file layouts: docs/export.md.
"""

from __future__ import annotations

import os
from typing import Any

import click

from dnnlib import cli_errors

FORMATS = ("safetensors", "upstream", "onnx")
WHICH = ("G_ema", "G", "D", "all")
NETWORK_KEYS = ("G", "D", "G_ema")
NOISE_MODES = ("const", "none")  # random noise cannot be reproduced inside an ONNX graph


class ExportError(ValueError):
    """A request that cannot be exported; str() is one line naming the option and the fix."""


def select_networks(data: dict, which: str, network_pkl: str, fmt: str) -> dict[str, Any]:
    """The networks `which` names, in G, D, G_ema order; refuses a name the file does not hold."""
    if fmt == "upstream":
        wanted = list(NETWORK_KEYS)  # upstream's loader asserts all three
    else:
        wanted = [key for key in NETWORK_KEYS if data.get(key) is not None] if which == "all" else [which]
    missing = [key for key in wanted if data.get(key) is None]
    if missing or not wanted:
        held = ", ".join(key for key in NETWORK_KEYS if data.get(key) is not None)
        need = " (upstream's loader needs G, D and G_ema)" if fmt == "upstream" else ""
        fix = "export a training snapshot" if need else "choose --which from those"
        raise ExportError(f"--network={network_pkl}: holds no {' or '.join(missing or ['network'])}{need} (it has: "
                          f"{held or 'none'}); {fix}")
    return {key: data[key].eval().requires_grad_(False).cpu() for key in wanted}


def check_which(fmt: str, which: str) -> None:
    if fmt == "upstream" and which != "all":
        raise ExportError(f"--which={which}: upstream's loader needs G, D and G_ema in one pickle; use --which=all")
    if fmt == "onnx" and which not in ("G_ema", "G"):
        raise ExportError(f"--which={which}: ONNX export takes one generator; use --which=G_ema or --which=G")


def check_out_path(out: str, force: bool) -> None:
    if os.path.isdir(out):
        raise ExportError(f"--out={out} is a folder; give a file path")
    if os.path.exists(out) and not force:
        raise ExportError(f"--out={out} already exists; choose another path or pass --force to replace it")


def export_network(network_pkl: str, fmt: str, out: str, which: str | None = None, force: bool = False,
                   truncation_psi: float = 1.0, noise_mode: str = "const") -> str:
    """Load `network_pkl` and write it to `out` in `fmt`; returns `out`. Nothing is written on failure."""
    from training.network_pickle import load_network_pkl  # heavy import kept out of --help

    if fmt not in FORMATS:
        raise ExportError(f"--format={fmt} is unknown; choose one of {', '.join(FORMATS)}")
    which = which or ("G_ema" if fmt == "onnx" else "all")
    check_which(fmt, which)
    check_out_path(out, force)
    print(f'Loading networks from "{network_pkl}"...')
    data = load_network_pkl(network_pkl)
    networks = select_networks(data, which, network_pkl, fmt)
    print(f"Exporting {', '.join(networks)} as {fmt} to \"{out}\"...")
    try:
        write_format(fmt, out, networks, data, truncation_psi, noise_mode, os.path.basename(network_pkl))
    except ExportError:
        raise
    except ValueError as error:  # the writers' refusals (arguments JSON cannot hold, a missing package, ...)
        raise ExportError(f"--format={fmt}: {cli_errors.first_line(str(error))}") from None
    return out


def write_format(fmt: str, out: str, networks: dict, data: dict, truncation_psi: float,
                 noise_mode: str, source: str) -> None:
    from dnnlib import util

    if fmt == "safetensors":
        from training import network_safetensors
        payload = network_safetensors.encode(networks, data.get("training_set_kwargs"))
        with util.atomic_write(out, "wb") as f:
            f.write(payload)
    elif fmt == "upstream":
        from training import upstream_export
        upstream_export.write_upstream_pkl(out, networks, data.get("training_set_kwargs"))
    else:
        from training import onnx_export
        error = onnx_export.write_onnx(out, next(iter(networks.values())), truncation_psi, noise_mode, source=source)
        print(f"onnxruntime check: max abs difference {error:.3g} from PyTorch on {len(onnx_export.CHECK_SEEDS)} "
              f"seeds (limit {onnx_export.CHECK_TOLERANCE:g})")


@click.command()
@click.option("--network", "network_pkl", required=True, metavar="PATH|URL", callback=cli_errors.expand_user,
              help="Network pickle (ours or upstream's), torch.save state dict or .safetensors export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="What to write")
@click.option("--out", required=True, metavar="FILE", callback=cli_errors.expand_user, help="Output file")
@click.option("--which", type=click.Choice(WHICH), help="Networks to export [default: all; onnx: G_ema]")
@click.option("--trunc", "truncation_psi", type=float, default=1, show_default=True,
              help="onnx: truncation psi, fixed in the graph")
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True,
              help="onnx: noise mode, fixed in the graph")
@click.option("--force", is_flag=True, help="Replace an existing --out")
def main(network_pkl: str, fmt: str, out: str, which: str | None, truncation_psi: float, noise_mode: str,
         force: bool) -> None:
    """Export a network for other tools (upstream StyleGAN loaders, safetensors readers, ONNX runtimes)."""
    from training.network_pickle import NetworkPickleError

    # FileNotFoundError innermost: a missing --network is a usage error (exit 2), other OS errors are not.
    with cli_errors.one_line_errors(NetworkPickleError, ExportError, OSError), \
            cli_errors.one_line_errors(FileNotFoundError, prefix="--network=", exit_code=2):
        export_network(network_pkl, fmt, out, which, force, truncation_psi, noise_mode)
    print(f"Wrote {out}")


if __name__ == "__main__":
    main()
