"""Small shared utilities: EasyDict, cache directory, URL opening, construct-by-name, log tee."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import re
import sys
import tempfile
import time
import urllib.parse
from typing import Any, Callable, Iterator


class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


# ----------------------------------------------------------------------------
# Cache directory.

def make_cache_dir_path(*paths: str) -> str:
    """Path inside the cache dir: $DNNLIB_CACHE_DIR, else ~/.cache/dnnlib."""
    root = os.environ.get("DNNLIB_CACHE_DIR")
    if not root:
        root = os.path.join(os.path.expanduser("~"), ".cache", "dnnlib")
    return os.path.join(root, *paths)


# ----------------------------------------------------------------------------
# Atomic writes: nothing already written is ever half-overwritten.

@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the permissions open() would
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = path  # a failed write or fsync (disk full) then names the file it was for
        raise


def current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_probe_error(folder: str) -> OSError | None:
    """None when a file can be created in `folder` (a temporary one, removed at once), else the OSError why not."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err
    return None


def atomic_append_line(path: str, line: str) -> None:
    """Append one text line to `path` by rewriting it atomically (safe for small logs)."""
    old = b""
    if os.path.exists(path):
        with open(path, "rb") as f:
            old = f.read()
    with atomic_write(path, "wb") as f:
        f.write(old + line.rstrip("\n").encode("utf-8") + b"\n")


def special_file_kind(path: str) -> str | None:
    """None for a regular file (a link to one included); else what it is ("a FIFO (named pipe)", ...).
    Reading a FIFO or a device named like a data file would block or never end."""
    import stat

    mode = os.stat(path).st_mode  # follows links; raises OSError for a dangling one
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


# ----------------------------------------------------------------------------
# URLs and local files.

def is_url(obj: Any, allow_file_urls: bool = False) -> bool:
    if not isinstance(obj, str) or "://" not in obj:
        return False
    if allow_file_urls and obj.startswith("file://"):
        return True
    parsed = urllib.parse.urlparse(obj)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _file_url_to_path(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    path = urllib.parse.unquote(parsed.path)
    if parsed.netloc:  # file://host/path is only meaningful for localhost
        path = "/" + parsed.netloc + path if parsed.netloc != "localhost" else path
    return path


def _cache_file_name(url: str) -> str:
    digest = hashlib.md5(url.encode("utf-8")).hexdigest()
    base = os.path.basename(urllib.parse.urlparse(url).path) or "download"
    base = re.sub(r"[^0-9a-zA-Z._-]+", "_", base)
    return f"{digest}_{base}"


def open_url(
    url: str,
    cache_dir: str | None = None,
    num_attempts: int = 3,
    verbose: bool = True,
    return_filename: bool = False,
    cache: bool = True,
) -> Any:
    """Open a local path, a file:// URL or an http(s) URL (downloaded once into the cache).

    Returns a binary file object, or its local path when `return_filename` is set.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"open_url: expected a path or URL, got {url!r}")
    if not is_url(url, allow_file_urls=True):
        if not os.path.isfile(url):
            raise FileNotFoundError(f"{url}: no such file")
        return url if return_filename else open(url, "rb")
    if url.startswith("file://"):
        path = _file_url_to_path(url)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{url}: no such file ({path})")
        return path if return_filename else open(path, "rb")

    if cache_dir is None:
        cache_dir = make_cache_dir_path("downloads")
    cached = os.path.join(cache_dir, _cache_file_name(url))
    if cache and os.path.isfile(cached):
        return cached if return_filename else open(cached, "rb")

    data = _download(url, num_attempts=num_attempts, verbose=verbose)
    if cache:
        with atomic_write(cached, "wb") as f:
            f.write(data)
        return cached if return_filename else open(cached, "rb")
    if return_filename:
        raise ValueError("open_url: return_filename requires cache=True for remote URLs")
    return io.BytesIO(data)


def _download(url: str, num_attempts: int, verbose: bool) -> bytes:
    import requests  # local import: only needed for remote URLs

    last_error: Exception | None = None
    for attempt in range(max(num_attempts, 1)):
        try:
            if verbose:
                print(f"Downloading {url} ...", file=sys.stderr, flush=True)
            with requests.get(url, timeout=30) as res:
                res.raise_for_status()
                if len(res.content) == 0:
                    raise IOError("empty response")
                return res.content
        except Exception as err:  # noqa: BLE001 - retried, then reported below
            last_error = err
            time.sleep(min(2 ** attempt, 4) * 0.1)
    raise IOError(
        f"Could not download {url} ({type(last_error).__name__}: {last_error}). "
        f"If this machine is offline, download the file elsewhere and pass its local path instead of the URL."
    )


# ----------------------------------------------------------------------------
# Construct objects by exact dotted name, from a registry fixed in code.
#
# Every name a construct-by-name call may resolve is listed here; anything else is refused BEFORE any module is
# imported, so a name read from a file (a pickle, training_options.json, results.json) can never make Python import,
# and so run, a module planted beside ours. The names are the ones train.py's option builder (training/config.py)
# and the network records (torch_utils/persistence.py) use. docs/security.md lists every dynamic call.

NETWORK_CLASS_NAMES = tuple("training.networks." + name for name in (
    "FullyConnectedLayer", "Conv2dLayer", "MappingNetwork", "SynthesisLayer", "ToRGBLayer", "SynthesisBlock",
    "SynthesisNetwork", "Generator", "DiscriminatorBlock", "MinibatchStdLayer", "DiscriminatorEpilogue",
    "Discriminator")) + ("training.augment.AugmentPipe",)
CONSTRUCTIBLE_NAMES = frozenset(NETWORK_CLASS_NAMES + (
    "training.dataset.ImageFolderDataset", "training.loss.StyleGAN2Loss", "torch.optim.Adam"))


def get_obj_by_name(name: str) -> Any:
    """Resolve one of CONSTRUCTIBLE_NAMES ('package.module.attr') to the object; anything else is refused unimported."""
    if not isinstance(name, str) or name not in CONSTRUCTIBLE_NAMES:
        raise ValueError(f"get_obj_by_name: refusing {name!r:.120}; it is not one of the classes this project "
                         f"constructs by name (dnnlib.util.CONSTRUCTIBLE_NAMES)")
    module_name, attr = name.rsplit(".", 1)
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"get_obj_by_name: module {module_name!r} has no attribute {attr!r}") from None


def call_func_by_name(*args: Any, func_name: str, **kwargs: Any) -> Any:
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise ValueError(f"{func_name} is not callable")
    return func(*args, **kwargs)


def construct_class_by_name(*args: Any, class_name: str, **kwargs: Any) -> Any:
    return call_func_by_name(*args, func_name=class_name, **kwargs)


# ----------------------------------------------------------------------------
# Human-readable formatting.

def format_time(seconds: float) -> str:
    """1d 02h 03m / 4h 05m 06s / 5m 03s / 7s, as the training status line shows it."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 60 * 60:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 24 * 60 * 60:
        return f"{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m"


def parse_range_list(spec: str, option: str = "--seeds") -> list[int]:
    """Parse '0-9,20,30-35' into [0..9, 20, 30..35]; clear error naming the option otherwise."""
    if isinstance(spec, (list, tuple)):
        return [int(v) for v in spec]
    values: list[int] = []
    text = str(spec).strip()
    if not text:
        raise ValueError(f"{option}: empty list; give e.g. '0-9,20'")
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"{option}: range {part!r} is reversed; write it as {hi}-{lo}")
            values.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            values.append(int(part))
        else:
            raise ValueError(f"{option}: cannot parse {part!r}; use non-negative integers and ranges like '0-9,20'")
    return values


# ----------------------------------------------------------------------------
# Logger: tee stdout/stderr into a file.

class Logger:
    """Duplicate everything written to stdout/stderr into `file_name` (append mode)."""

    def __init__(self, file_name: str | None = None, file_mode: str = "a", should_flush: bool = True):
        self.file = open(file_name, file_mode, encoding="utf-8") if file_name is not None else None
        self.should_flush = should_flush
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        sys.stdout = self  # type: ignore[assignment]
        sys.stderr = self  # type: ignore[assignment]

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def write(self, text: str) -> int:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if len(text) == 0:
            return 0
        if self.file is not None:
            self.file.write(text)
        self.stdout.write(text)
        if self.should_flush:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()
        self.stdout.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self.flush()
        if sys.stdout is self:
            sys.stdout = self.stdout
        if sys.stderr is self:
            sys.stderr = self.stderr
        if self.file is not None:
            self.file.close()
            self.file = None
