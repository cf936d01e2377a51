"""`python scripts/<name>.py` runs as `python -m scripts.<name>`: the scripts that use the harness package.

Run by path, Python puts scripts/ (not the repository) first on the module path, so `scripts.compare`,
`training`, ... would not import, or would come from another installed checkout. Instead of editing
sys.path, the script is started again as its package module with this checkout first on PYTHONPATH
(children such as train.py inherit it, and run this same checkout). On Python >= 3.11, -P keeps the current
directory off the path, so a command run from inside another checkout still uses this one.
"""

from __future__ import annotations

import os
import sys


def rerun_as_package_module(script_file: str) -> None:
    """Replace this process with `python [-P] -m scripts.<stem> <the same arguments>`; does not return."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(script_file)))
    module = "scripts." + os.path.splitext(os.path.basename(script_file))[0]
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    os.execve(sys.executable, [sys.executable, *safe_path, "-m", module, *sys.argv[1:]], dict(os.environ, PYTHONPATH=path))
