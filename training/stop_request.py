"""Stop requests: what SIGINT/SIGTERM mean at each moment of a run.

Before the training loop runs, a signal stops at once (nothing to snapshot yet: `stop_on_signal_during_startup`).
From then on a `StopRequest` turns it into "finish the step, write a snapshot, exit". Spawned ranks do not get
the signal themselves: the launching parent sets a process-shared value (`shared_stop_value`) that each polls.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StartupInterrupted(Exception):
    """SIGINT/SIGTERM before the training loop took over its signals: nothing to snapshot yet."""


@contextlib.contextmanager
def stop_on_signal_during_startup():
    """Until the training loop installs its own handlers (finish the step, snapshot), a signal stops at once."""
    def interrupt(signum, _frame):
        raise StartupInterrupted(signal.Signals(signum).name)

    try:
        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread (an embedding application): leave its handlers alone
        previous = {}
    try:
        yield
    except StartupInterrupted as err:
        print(f"Stopped by {err} during start-up; nothing was trained.", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def shared_stop_value(context: Any) -> Any:
    """A process-shared int for StopRequest(shared=...): 0, or the number of the signal the parent received."""
    return context.Value("i", 0)


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes the step, writes a snapshot and exits cleanly.

    `shared`: a process-shared value (see shared_stop_value) that a launching parent sets instead of
    signalling its ranks."""

    def __init__(self, shared: Any = None, announce: bool = True) -> None:
        self._requested = False
        self._shared = shared
        self._announce = announce
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        if not self._requested and self._shared is not None and self._shared.value != 0:
            self._handle(self._shared.value, None)
        return self._requested

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a worker thread): no handler
                pass
        if self._previous:  # a launching parent may have blocked them while it started this process
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        if self._requested:  # second signal: give up immediately
            raise KeyboardInterrupt
        self._requested = True
        if self._announce:
            print(f"\nReceived {signal.Signals(signum).name}: finishing this step and writing a snapshot...", flush=True)
