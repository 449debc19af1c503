"""The live terminal UI (Textual).

It only ever consumes :data:`oomtop.source.Update` values (Samples, OomEvents, Notices) from a Source, so the
same app runs on a node, on a replay and in snapshot tests; nothing in this package opens /sys or /proc.
The pure parts (:mod:`.rows`, :mod:`.cells`, :mod:`.history`, :mod:`.themes`) carry no widget state and are
tested directly; the widgets are thin.
"""

from __future__ import annotations
