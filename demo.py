"""Embedded demo (README command 1). Until train.py lands: summarise the embedded dataset."""

import pathlib

import numpy as np
from PIL import Image

root = pathlib.Path(__file__).resolve().parent / "datasets" / "emoji-smileys"
files = sorted(root.glob("*.png"))
arr = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
print(f"{root.name}: {len(files)} images, shape {arr.shape[1:]}, mean pixel {arr.mean():.2f}")
