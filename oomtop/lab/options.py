"""What a lab run was asked to do: the command line's choices (and the demo maker's), in one record.

Apart from the session so that everything that reads the options (the session, the scenario API, the entry
points) can import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from oomtop.lab.layout import Driver

UI_PACE_S = 2.5  # in the live view, a hog takes this long per 100 MiB: slow enough to watch the bars grow


@dataclass
class LabOptions:
    scenario: str
    runtime: str = "plain"
    driver: Driver = Driver.CGROUPFS
    headless: bool = False
    record: str | None = None
    count: int = 10
    seed: int = 1
    capacity_bytes: int | None = None
    interval_s: float = 0.2
    theme: str | None = None
    pace_s: float | None = None  # seconds per 100 MiB a hog takes to allocate (None: 0 headless, 2.5 in the UI)
    pauses: bool | None = None  # moments for the user to look between steps (None: in the live view only)
    hostname: str | None = None  # replaces the node's hostname in every Sample (the shipped demo)
    strip_parent: bool = False  # record paths without the lab's parent cgroup, as a node's (the shipped demo)
    redact_cmdline: bool = False

    def effective_pace_s(self) -> float:
        """Seconds per 100 MiB: as asked, else as fast as possible headless (a test waits for nothing) and slow
        enough to watch in the live view."""
        if self.pace_s is not None:
            return self.pace_s
        return 0.0 if self.headless else UI_PACE_S

    def effective_pauses(self) -> bool:
        """Whether scenarios pause between steps: as asked, else only where someone watches (the live view)."""
        return self.pauses if self.pauses is not None else not self.headless
