"""Project-wide helpers (EasyDict, URL opening, cache dir, logging)."""

from .util import EasyDict, make_cache_dir_path, open_url

__all__ = ["EasyDict", "make_cache_dir_path", "open_url"]
