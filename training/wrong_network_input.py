"""What a --network argument is when it is no network pickle: a run directory, a dataset zip.

A user who passes the run directory or the dataset zip by mistake gets told which it is and what to give
instead, rather than "no such network pickle" or "the file is truncated or forged".
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Optional

from training import run_dir as rundir

DATASET_MEMBERS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", "dataset.json")


def directory_message(path: str) -> str:
    """`<dir>: a directory, not a network pickle; give ...` naming its newest snapshot when it has one."""
    newest = rundir.newest_snapshot(path)
    if newest is not None:
        return f"{path}: a directory, not a network pickle; give one of its snapshots, e.g. {newest}"
    return f"{path}: a directory, not a network pickle; give a network-snapshot-*.pkl file"


def zip_without_network(data: bytes, source: str) -> Optional[str]:
    """A one-line message when the zip bytes are a dataset (images, dataset.json) or hold no torch.save
    record at all; None for a zip that looks like torch.save's (its own loader then judges it)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # a broken archive: the torch loader's message says so
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return None
    members = [name for name in names if os.path.basename(name).lower().endswith(DATASET_MEMBERS)]
    if members:
        return (f"{source}: a dataset zip ({len(names)} files such as {members[0]}), not a network pickle; give it "
                f"with --data and a network-snapshot-*.pkl with --network")
    return f"{source}: a zip archive without a torch.save record (no data.pkl), not a network pickle"
