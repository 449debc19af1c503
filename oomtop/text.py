"""Formatting shared by every output: byte sizes, and untrusted system text made safe to print.

Process names, command lines and pod names come from anyone who can start a process.  They may hold terminal
escapes (which could rewrite the screen), other control characters and invalid UTF-8 (already turned into
``\\xNN`` by the readers).  :func:`printable` shows every control character as a visible escape, so such text
can change nothing on screen but its own cell.
"""

from __future__ import annotations

_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x00, 0x20), *range(0x7F, 0xA0)]}
_CONTROL[ord("\t")] = "\\t"
_CONTROL[ord("\n")] = "\\n"
_CONTROL[ord("\r")] = "\\r"
_BIDI_AND_INVISIBLE = {
    code: f"\\u{code:04x}" for code in [0x200B, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF]
}
_TABLE = {**_CONTROL, **_BIDI_AND_INVISIBLE}


def printable(text: str) -> str:
    """``text`` with control, bidi-override and zero-width characters shown as escapes."""
    return text.translate(_TABLE)


def format_bytes(value: int | None, unlimited: str = "-") -> str:
    """Binary units, three significant figures: 512B, 12.3K, 123M, 1.50G."""
    if value is None:
        return unlimited
    size = float(value)
    sign = "-" if size < 0 else ""
    size = abs(size)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if size < 1024 or unit == "P":
            break
        size /= 1024
    if unit == "B":
        return f"{sign}{int(size)}B"
    if size >= 100:
        return f"{sign}{size:.0f}{unit}"
    if size >= 10:
        return f"{sign}{size:.1f}{unit}"
    return f"{sign}{size:.2f}{unit}"


def truncate(text: str, width: int) -> str:
    """Cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
