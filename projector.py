"""Project an image into the latent space W of a trained generator (GAN inversion), as upstream's projector.py.

Examples:
  python projector.py --network=network-snapshot-000000.pkl --target=face.png --outdir=out
  python generate.py --network=network-snapshot-000000.pkl --projected-w=out/projected_w.npz --outdir=out

Writes target.png (the target, centre-cropped and resized to the network), proj.png (the projection),
projected_w.npz ('w', [1, num_ws, w_dim]) and, with --save-video, proj.mp4 (target | projection at every
step; needs imageio with ffmpeg) or, without a video writer, proj_steps.png (a strip of 10 steps).
The method is described in training/inversion.py and docs/projector.md.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click
import numpy as np
import torch

from dnnlib.progress import ProgressBar
from training.latent_io import (check_outdir, load_generator, load_target_image, load_vgg16, output_errors, pick_device,
                                require_unconditional, save_png, save_projected_w, to_uint8_hwc)

STRIP_FRAMES = 10


def run_projection(network_pkl: str, target_path: str, outdir: str, num_steps: int, seed: int, save_video: bool,
                   device: torch.device | None = None, vgg16: str | None = None) -> list[str]:
    """Project the target and write the outputs; returns their paths."""
    from training.inversion import ProjectionOptions, project

    check_outdir(outdir)
    device = device or pick_device()
    print(f'Loading networks from "{network_pkl}"...')
    G = load_generator(network_pkl, device)
    require_unconditional(G, network_pkl, "projection")
    target = load_target_image(target_path, G.img_resolution, G.img_channels)
    vgg = load_vgg16(device, vgg16)

    progress = ProgressBar(num_steps, label="steps", stream=sys.stdout)
    start = time.time()

    def report(step: int, dist: float, loss: float) -> None:
        progress.label = f"steps (dist {dist:.4f}, loss {loss:.4g})"
        progress.set(step + 1)

    projection = project(G, target, vgg, ProjectionOptions(num_steps=num_steps, seed=seed), device, report)
    print(f"Elapsed: {time.time() - start:.1f} s")

    os.makedirs(outdir, exist_ok=True)
    paths = [os.path.join(outdir, name) for name in ("target.png", "proj.png", "projected_w.npz")]
    save_png(target.permute(1, 2, 0).numpy(), paths[0])
    save_png(synthesize(G, projection.ws())[0], paths[1])
    save_projected_w(projection.ws(), paths[2])
    if save_video:
        paths.append(save_progress(G, target, projection, outdir))
    return paths


def synthesize(G: Any, ws: torch.Tensor) -> np.ndarray:
    """uint8 [N, H, W, C] with the network's own constant noise (what generate.py --projected-w makes)."""
    with torch.no_grad():
        return to_uint8_hwc(G.synthesis(ws.to(next(G.parameters()).device), noise_mode="const"))


def save_progress(G: Any, target: torch.Tensor, projection: Any, outdir: str) -> str:
    """proj.mp4 (target | projection, every step, 10 fps) when a video writer is installed, else a PNG strip."""
    target_hwc = target.permute(1, 2, 0).numpy()
    num_steps = projection.w_steps.shape[0]
    try:
        import imageio  # optional dependency
        path = os.path.join(outdir, "proj.mp4")
        writer = imageio.get_writer(path, mode="I", fps=10, codec="libx264", bitrate="16M")
    except Exception as err:  # imageio missing, or no ffmpeg backend: any failure means "no video writer"
        steps = np.linspace(0, num_steps - 1, STRIP_FRAMES).round().astype(int)
        path = os.path.join(outdir, "proj_steps.png")
        frames = [target_hwc] + [synthesize(G, projection.ws(int(s)))[0] for s in steps]
        save_png(np.concatenate(frames, axis=1), path)
        print(f"No video writer ({type(err).__name__}: install imageio and imageio-ffmpeg for proj.mp4); "
              f"wrote {path} (target, then steps {', '.join(str(s + 1) for s in steps)})")
        return path
    print(f'Saving optimization progress video "{path}"')
    with writer:
        for step in range(num_steps):
            writer.append_data(_rgb(np.concatenate([target_hwc, synthesize(G, projection.ws(step))[0]], axis=1)))
    return path


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame


@click.command()
@click.option("--network", "network_pkl", help="Network pickle filename", required=True)
@click.option("--target", "target_path", help="Target image file to project to", required=True, metavar="FILE")
@click.option("--num-steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Number of optimization steps")
@click.option("--seed", type=int, default=303, show_default=True, help="Random seed")
@click.option("--save-video", type=bool, default=True, show_default=True,
              help="Save an mp4 video of optimization progress (a PNG strip without a video writer)")
@click.option("--outdir", required=True, metavar="DIR", help="Where to save the output images")
@click.option("--vgg16", metavar="PATH|URL", help="VGG16/LPIPS weights (e.g. upstream's vgg16.pkl)  "
                                                  "[default: $FAKECLR_VGG16, else the installed offline weights]")
def main(network_pkl: str, target_path: str, outdir: str, save_video: bool, seed: int, num_steps: int,
         vgg16: str | None) -> None:
    """Project the given image into the latent space of a pretrained network."""
    with output_errors():
        paths = run_projection(network_pkl, target_path, outdir, num_steps, seed, save_video, vgg16=vgg16)
    print(f"Wrote {', '.join(os.path.basename(p) for p in paths)} to {outdir}")


if __name__ == "__main__":
    main()
