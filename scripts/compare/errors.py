"""The harness's one exception: a bad option, file or run; the message is one line naming it and the fix."""

from __future__ import annotations


class HarnessError(ValueError):
    """Raised by the harness's library code; compare_methods.py prints it as `Error: <message>` (exit 1)."""
