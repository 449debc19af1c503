"""``oomtop replay FILE --json``: every Sample and kill as JSON lines, in the shapes of ``--once --json`` and
``events --json``, each line tagged with its ``type`` ("sample" or "event") so other tools can split them."""

from __future__ import annotations

import json
from typing import TextIO

from oomtop.explain import Explainer, event_to_json
from oomtop.model import OomEvent
from oomtop.record.reader import Recording
from oomtop.report import to_json


def export_json_lines(recording: Recording, out: TextIO) -> int:
    """Write the recording in time order (kills between the samples around them); returns the lines written."""
    events = sorted(recording.events, key=lambda event: event.time or 0.0)
    explainer = Explainer()  # in time order, so a kill right after another in its domain is told as such

    def write_event(event: OomEvent) -> None:
        line = {"type": "event", **event_to_json(event, explainer.explain(event))}
        out.write(json.dumps(line, ensure_ascii=False) + "\n")

    index = 0
    lines = 0
    for sample in recording.iter_samples():
        while index < len(events) and (events[index].time or 0.0) <= sample.time:
            write_event(events[index])
            index += 1
            lines += 1
        out.write(json.dumps({"type": "sample", **to_json(sample)}, ensure_ascii=False) + "\n")
        lines += 1
    for event in events[index:]:
        write_event(event)
        lines += 1
    return lines
