"""The live view the lab shows while its scenario runs.

The lab (:mod:`oomtop.lab`) is headless code: it never imports Textual or this package, so ``oomtop lab
--headless`` runs where Textual is not installed.  The CLI hands the lab :func:`open_lab_view`, which builds the
app here; the lab only runs it and asks it to exit.
"""

from __future__ import annotations

import threading

from oomtop.source import Notice, Source
from oomtop.ui.app import OomtopApp
from oomtop.ui.themes import discover, resolve


class LabAppView:
    """The app over the lab's Source, every cgroup opened from the start (so the lab's bars are in view)."""

    def __init__(self, source: Source, theme: str | None, interval_s: float) -> None:
        catalogue = discover()
        chosen, problem = resolve(theme, catalogue)
        notices = [Notice(problem, "theme")] if problem else []
        self.app = OomtopApp(
            source,
            theme=chosen,
            catalogue=catalogue,
            notices=notices,
            interval_s=interval_s,
            tune_gc=True,
            open_cgroups=True,
        )

    def run(self) -> None:
        """Run the app on this (the main) thread until it exits."""
        self.app.run()

    def exit_soon(self) -> None:
        """Ask the app to exit; safe from a signal handler (the request is made on a thread of its own)."""
        app = self.app
        threading.Thread(target=lambda: app.call_from_thread(app.exit), name="oomtop-lab-exit", daemon=True).start()


def open_lab_view(source: Source, theme: str | None, interval_s: float) -> LabAppView:
    """The :data:`oomtop.lab.runner.ViewFactory` the CLI gives the lab."""
    return LabAppView(source, theme, interval_s)
