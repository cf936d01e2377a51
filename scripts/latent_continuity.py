"""Latent-continuity report for one or several networks: interpolation smoothness, PPL mean ± std, inversion.

Example (see docs/continuity.md):
  python scripts/latent_continuity.py --network=ada.pkl --network=fakeclr.pkl --label=ada --label=fakeclr \\
      --data=emoji-smileys-32.zip --outdir=continuity

Writes DIR/report.json, DIR/report.md, DIR/interpolation.png and DIR/inversion.png. The measurements are in
metrics/latent_continuity.py; this script only reads the options and checks the inputs.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: start again as `python -m scripts.latent_continuity`
    import _as_module  # scripts/ is first on the module path of a script run by path

    _as_module.rerun_as_package_module(__file__)

import os

import click

from training.latent_io import (check_outdir, load_generator, load_vgg16, output_errors, pick_device,
                                require_unconditional)


def default_labels(networks: list[str]) -> list[str]:
    """File stems when they differ, else the run directories' names, else net0, net1, ..."""
    for candidates in ([os.path.splitext(os.path.basename(p))[0] for p in networks],
                       [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in networks]):
        if len(set(candidates)) == len(candidates):
            return candidates
    return [f"net{i}" for i in range(len(networks))]


def resolve_labels(networks: list[str], labels: list[str]) -> list[str]:
    if not labels:
        return default_labels(networks)
    if len(labels) != len(networks):
        raise click.ClickException(f"--label: {len(labels)} label(s) for {len(networks)} network(s); give one "
                                   "--label per --network, in the same order, or none")
    if len(set(labels)) != len(labels):
        raise click.ClickException("--label: a label is used twice; give every network its own label")
    return labels


def check_dataset(data: str, generators: list[tuple[str, str, object]]) -> None:
    from metrics.features import DEFAULT_DATASET_CLASS, open_dataset

    if not os.path.exists(data):
        raise click.ClickException(f"--data={data}: no such dataset folder or zip; build one with dataset_tool.py")
    dataset = open_dataset(dict(class_name=DEFAULT_DATASET_CLASS, path=data))
    for label, path, G in generators:
        if (dataset.resolution, dataset.num_channels) != (G.img_resolution, G.img_channels):
            raise click.ClickException(
                f"--data={data}: images are {dataset.resolution} px with {dataset.num_channels} channel(s), but "
                f"--network={path} makes {G.img_resolution} px with {G.img_channels}; use the training data")
    z_dims = {G.z_dim for _, _, G in generators}
    if len(z_dims) > 1:
        raise click.ClickException(f"--network: the networks have different z_dim ({sorted(z_dims)}); they cannot "
                                   "share latents, compare networks of the same configuration")


@click.command()
@click.option("--network", "networks", multiple=True, required=True, metavar="PKL",
              help="Network pickle; repeat for several networks")
@click.option("--label", "labels", multiple=True, help="Name of each network in the report, in --network order")
@click.option("--data", required=True, metavar="PATH", help="Real images (folder or zip) for PPL and inversion")
@click.option("--outdir", required=True, metavar="DIR", help="Where to write the report")
@click.option("--pairs", type=click.IntRange(min=1), default=32, show_default=True, help="Interpolation pairs")
@click.option("--steps", type=click.IntRange(min=1), default=16, show_default=True, help="Steps per interpolation")
@click.option("--ppl-samples", type=click.IntRange(min=0), default=5000, show_default=True,
              help="PPL samples per space (0: skip PPL)")
@click.option("--invert", type=click.IntRange(min=0), default=8, show_default=True,
              help="Real images to project (0: skip inversion)")
@click.option("--proj-steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Projector steps per image")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the latents and the real-image draw")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Device  [default: cuda if available]")
@click.option("--vgg16", metavar="PATH|URL", help="VGG16/LPIPS weights (e.g. upstream's vgg16.pkl)  "
                                                  "[default: $FAKECLR_VGG16, else the installed offline weights]")
def main(networks: tuple[str, ...], labels: tuple[str, ...], data: str, outdir: str, pairs: int, steps: int,
         ppl_samples: int, invert: int, proj_steps: int, seed: int, device: str | None, vgg16: str | None) -> None:
    """Measure how smooth and invertible the latent spaces of the networks are."""
    from metrics.continuity_report import run_report
    from metrics.latent_continuity import ContinuityOptions

    names = resolve_labels(list(networks), list(labels))
    check_outdir(outdir)
    torch_device = pick_device(device)
    generators = []
    for label, path in zip(names, networks):
        print(f'Loading "{path}" as {label}...')
        G = load_generator(path, torch_device)
        require_unconditional(G, path, "the continuity report")
        generators.append((label, path, G))
    check_dataset(data, generators)
    vgg = load_vgg16(torch_device, vgg16)
    opts = ContinuityOptions(pairs=pairs, steps=steps, ppl_samples=ppl_samples, invert=invert, proj_steps=proj_steps,
                             seed=seed)
    with output_errors():
        run_report(generators, data, outdir, opts, vgg, torch_device)
    print(f"Wrote {os.path.join(outdir, 'report.md')} (and report.json, interpolation.png"
          f"{', inversion.png' if invert else ''})")


if __name__ == "__main__":
    main()
