"""One-line errors at the command-line boundary: `Error: <file>: <what is wrong>; <how to fix>`, exit non-zero.

The CLIs (generate.py, calc_metrics.py, dataset_tool.py) wrap the steps that touch files in `one_line_errors`;
the exceptions it is told about become a single line on stderr instead of a traceback. Setting FAKECLR_DEBUG=1
in the environment lets the original exception and its traceback through, for bug reports.
Paths given on the command line expand `~` through the `expand_user` click callback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from typing import Any, Iterator

import click

DEBUG_ENV = "FAKECLR_DEBUG"

_OS_FIXES = {
    errno.ENOSPC: "free some disk space, then run again",
    errno.EDQUOT: "free some disk space (quota), then run again",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EEXIST: "a file of that name is in the way; choose another path",
    errno.EISDIR: "it is a folder; give a file path",
}


class OneLineError(click.ClickException):
    """Printed by click as `Error: <message>` on stderr; exit status 1 (2 for a bad command-line value)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(first_line(message))
        self.exit_code = exit_code


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def first_line(message: str) -> str:
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    return without_unsafe_advice(lines[0]) if lines else "unknown error"


# torch and numpy suggest loading an untrusted file with code execution enabled; we never relay that advice.
_UNSAFE_ADVICE = re.compile(r"weights_only|allow_pickle|trust the source|can still be loaded|weights only load failed",
                            re.IGNORECASE)
_SAFE_REPLACEMENT = ("it holds objects other than plain data (tensors, arrays, containers), which are refused because "
                     "loading them could run code")


def without_unsafe_advice(text: str) -> str:
    """The text, its quoted library message replaced by a neutral description when that advises loading the file
    with pickles/code enabled (what precedes the quote, such as the file name, is kept)."""
    advice = _UNSAFE_ADVICE.search(text)
    if not advice:
        return text
    found = re.search(r"GLOBAL ([\w.]+)", text)
    neutral = _SAFE_REPLACEMENT + (f"; it names {found.group(1)}" if found else "")
    cut = max(text.rfind("(", 0, advice.start()), text.rfind(": ", 0, advice.start()))
    if cut < 0:
        return neutral
    return f"{text[:cut]}({neutral})" if text[cut] == "(" else f"{text[:cut]}: {neutral}"


def describe(error: BaseException, fix: str | None = None) -> str:
    """`<file>: <what is wrong>; <how to fix>` for an exception (OS errors get a fix from their errno)."""
    if isinstance(error, OSError) and error.strerror:
        where = error.filename if error.filename is not None else "<unknown file>"
        return f"{where}: {error.strerror.lower()}; {fix or _OS_FIXES.get(error.errno, 'check the path and the disk')}"
    text = first_line(str(error)) if str(error).strip() else type(error).__name__
    return text if fix is None or ";" in text else f"{text}; {fix}"


@contextlib.contextmanager
def one_line_errors(*kinds: type[BaseException], prefix: str = "", fix: str | None = None,
                    exit_code: int = 1) -> Iterator[None]:
    """Turn the listed exceptions raised in the block into a OneLineError (`prefix` + description)."""
    try:
        yield
    except click.ClickException:
        raise
    except kinds as error:
        if debugging():
            raise
        raise OneLineError(prefix + describe(error, fix), exit_code) from None


def expand_user(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback: `~/x` -> `/home/me/x` (URLs and None pass unchanged)."""
    return os.path.expanduser(value) if isinstance(value, str) else value
