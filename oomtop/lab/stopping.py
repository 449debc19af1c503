"""How a lab run is stopped: one flag that every waiting step of the scenario thread checks.

Ctrl-C, SIGTERM, a closed live view or an ended Source set it from another thread (or a signal handler); the
scenario thread notices at its next check or while it sleeps, and unwinds with :class:`Aborted`, so the teardown
runs on the normal path out.  A flag of its own, not the session's, because the node, the scenario API and the
kill checks all wait on it and none of them should need the session to do so.
"""

from __future__ import annotations

import threading


class Aborted(Exception):
    """The run was stopped (Ctrl-C, SIGTERM, the UI closed)."""


class StopFlag:
    """Set once, from any thread; :meth:`check` and :meth:`sleep` raise :class:`Aborted` once it is."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Aborted` if the run is being stopped (called between the steps of a wait)."""
        if self._event.is_set():
            raise Aborted()

    def sleep(self, seconds: float) -> None:
        """Sleep, but raise :class:`Aborted` as soon as the run is stopped."""
        if self._event.wait(seconds):
            raise Aborted()

    def wait(self) -> None:
        """Block until the run is stopped (the live view after the scenario: until the user quits)."""
        self._event.wait()
