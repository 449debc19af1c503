"""Formatting shared by every output: byte sizes, untrusted system text made safe to print, and text laid out
by terminal cells.

Process names, command lines and pod names come from anyone who can start a process.  They may hold terminal
escapes (which could rewrite the screen), other control characters and invalid UTF-8 (already turned into
``\\xNN`` by the readers).  :func:`printable` shows every control character as a visible escape, so such text
can change nothing on screen but its own cell.

They may also hold wide (CJK), zero-width, combining and emoji characters, so a name's length in code points is
not its width on screen: a column cut with ``len()`` shifts the rest of its row.  :func:`cell_width`,
:func:`fit`, :func:`truncate` and :func:`pad` measure in terminal cells, always on text already passed through
:func:`printable` (escape first, then measure).  They agree with Rich's ``cell_len`` (what the UI and Textual's
compositor measure with), so the headless views and the screen lay a name out the same; this module may not
import Rich (headless commands must not need it), so it rebuilds Rich's rules from :mod:`unicodedata`, with the
few code points where the two differ listed below (``tests/test_cell_width.py`` holds them to Rich).
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Literal

_ZWJ = "\u200d"
_VS16 = "\ufe0f"
_ELLIPSIS = "…"

_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x00, 0x20), *range(0x7F, 0xA0)]}
_CONTROL[ord("\t")] = "\\t"
_CONTROL[ord("\n")] = "\\n"
_CONTROL[ord("\r")] = "\\r"
# U+2028/U+2029 (line and paragraph separators) break the line in some renderers: shown, not obeyed.
_BIDI_AND_INVISIBLE = {
    code: f"\\u{code:04x}"
    for code in [0x200B, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF]
}
_TABLE = {**_CONTROL, **_BIDI_AND_INVISIBLE}


def printable(text: str) -> str:
    """``text`` with control, bidi-override and zero-width characters shown as escapes.

    A zero-width joiner survives only between two pictographs (an emoji ZWJ sequence such as a family or a
    rainbow flag).  Rich measures a joiner as swallowing the character after it, which a terminal does only when
    it draws the pair as one glyph: a joiner between letters (``a\\u200d中``) would make a name look narrower to
    the layout than it is on screen, so it is shown as ``\\u200d`` instead.
    """
    text = text.translate(_TABLE)
    return _escape_stray_joiners(text) if _ZWJ in text else text


def _escape_stray_joiners(text: str) -> str:
    parts: list[str] = []
    start = 0
    at = text.find(_ZWJ)
    while at != -1:
        before = at - 1
        while before >= 0 and (text[before] == _VS16 or "\U0001f3fb" <= text[before] <= "\U0001f3ff"):
            before -= 1  # an emoji's presentation selector or skin tone sits between it and the joiner
        joins = before >= 0 and at + 1 < len(text) and _pictograph(text[before]) and _pictograph(text[at + 1])
        if not joins:
            parts += [text[start:at], "\\u200d"]
            start = at + 1
        at = text.find(_ZWJ, at + 1)
    parts.append(text[start:])
    return "".join(parts)


def _pictograph(char: str) -> bool:
    """A symbol an emoji sequence may join; unassigned code points of the emoji blocks count (newer emoji than
    this Python's Unicode data knows)."""
    category = unicodedata.category(char)
    return category == "So" or (category == "Cn" and 0x1F000 <= ord(char) <= 0x1FAFF)


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


# ------------------------------------------------------------------------------------------ terminal cells

# Text-presentation characters that a following U+FE0F turns into a two-cell emoji (Unicode's
# emoji-variation-sequences.txt; Rich's ``narrow_to_wide``): ❤ is one cell, ❤️ two.
_NARROW_TO_WIDE_RANGES = (
    (0x23, 0x23), (0x2A, 0x2A), (0x30, 0x39), (0xA9, 0xA9), (0xAE, 0xAE), (0x203C, 0x203C), (0x2049, 0x2049),
    (0x2122, 0x2122), (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA), (0x2328, 0x2328), (0x23CF, 0x23CF),
    (0x23ED, 0x23EF), (0x23F1, 0x23F2), (0x23F8, 0x23FA), (0x24C2, 0x24C2), (0x25AA, 0x25AB), (0x25B6, 0x25B6),
    (0x25C0, 0x25C0), (0x25FB, 0x25FC), (0x2600, 0x2604), (0x260E, 0x260E), (0x2611, 0x2611), (0x2618, 0x2618),
    (0x261D, 0x261D), (0x2620, 0x2620), (0x2622, 0x2623), (0x2626, 0x2626), (0x262A, 0x262A), (0x262E, 0x262F),
    (0x2638, 0x263A), (0x2640, 0x2640), (0x2642, 0x2642), (0x265F, 0x2660), (0x2663, 0x2663), (0x2665, 0x2666),
    (0x2668, 0x2668), (0x267B, 0x267B), (0x267E, 0x267E), (0x2692, 0x2692), (0x2694, 0x2697), (0x2699, 0x2699),
    (0x269B, 0x269C), (0x26A0, 0x26A0), (0x26A7, 0x26A7), (0x26B0, 0x26B1), (0x26C8, 0x26C8), (0x26CF, 0x26CF),
    (0x26D1, 0x26D1), (0x26D3, 0x26D3), (0x26E9, 0x26E9), (0x26F0, 0x26F1), (0x26F4, 0x26F4), (0x26F7, 0x26F9),
    (0x2702, 0x2702), (0x2708, 0x2709), (0x270C, 0x270D), (0x270F, 0x270F), (0x2712, 0x2712), (0x2714, 0x2714),
    (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721), (0x2733, 0x2734), (0x2744, 0x2744), (0x2747, 0x2747),
    (0x2763, 0x2764), (0x27A1, 0x27A1), (0x2934, 0x2935), (0x2B05, 0x2B07), (0x1F170, 0x1F171), (0x1F17E, 0x1F17F),
    (0x1F321, 0x1F321), (0x1F324, 0x1F32C), (0x1F336, 0x1F336), (0x1F37D, 0x1F37D), (0x1F396, 0x1F397),
    (0x1F399, 0x1F39B), (0x1F39E, 0x1F39F), (0x1F3CB, 0x1F3CE), (0x1F3D4, 0x1F3DF), (0x1F3F3, 0x1F3F3),
    (0x1F3F5, 0x1F3F5), (0x1F3F7, 0x1F3F7), (0x1F43F, 0x1F43F), (0x1F441, 0x1F441), (0x1F4FD, 0x1F4FD),
    (0x1F549, 0x1F54A), (0x1F56F, 0x1F570), (0x1F573, 0x1F579), (0x1F587, 0x1F587), (0x1F58A, 0x1F58D),
    (0x1F590, 0x1F590), (0x1F5A5, 0x1F5A5), (0x1F5A8, 0x1F5A8), (0x1F5B1, 0x1F5B2), (0x1F5BC, 0x1F5BC),
    (0x1F5C2, 0x1F5C4), (0x1F5D1, 0x1F5D3), (0x1F5DC, 0x1F5DE), (0x1F5E1, 0x1F5E1), (0x1F5E3, 0x1F5E3),
    (0x1F5E8, 0x1F5E8), (0x1F5EF, 0x1F5EF), (0x1F5F3, 0x1F5F3), (0x1F5FA, 0x1F5FA), (0x1F6CB, 0x1F6CB),
    (0x1F6CD, 0x1F6CF), (0x1F6E0, 0x1F6E5), (0x1F6E9, 0x1F6E9), (0x1F6F0, 0x1F6F0), (0x1F6F3, 0x1F6F3),
)  # fmt: skip
NARROW_TO_WIDE = frozenset(chr(code) for start, end in _NARROW_TO_WIDE_RANGES for code in range(start, end + 1))

# Where Rich's table (Unicode 17) says otherwise than the general rules below on this Python's Unicode data:
#   one cell although format characters: the soft hyphen and the prepended concatenation marks (Arabic number
#     signs), which terminals draw;
#   no cell although letters or symbols: the Hangul fillers and medial/final jamo (they join the syllable before
#     them), the emoji skin-tone modifiers (they colour the emoji before them), the tag characters and the
#     code points Unicode reserves as default-ignorable;
#   two cells since Unicode 16: the Yijing, Tai Xuan Jing and counting-rod symbols.
_OVERRIDE_RANGES = (
    (1, ((0xAD, 0xAD), (0x600, 0x605), (0x6DD, 0x6DD), (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2),
         (0x110BD, 0x110BD), (0x110CD, 0x110CD))),
    (0, ((0x1160, 0x11FF), (0x3164, 0x3164), (0xD7B0, 0xD7FF), (0xFFA0, 0xFFA0), (0x1F3FB, 0x1F3FF),
         (0x2028, 0x2029), (0x2065, 0x2065), (0xFFF0, 0xFFF8), (0xE0000, 0xE0FFF))),
    (2, ((0x2630, 0x2637), (0x268A, 0x268F), (0x4DC0, 0x4DFF), (0x1D300, 0x1D356), (0x1D360, 0x1D376))),
)  # fmt: skip
_OVERRIDES = {
    code: cells for cells, ranges in _OVERRIDE_RANGES for start, end in ranges for code in range(start, end + 1)
}

# Code points unassigned in this Python's Unicode data that are (or will be) wide: the ideograph blocks and
# planes 2 and 3 (Unicode's EastAsianWidth.txt default), Tangut, Khitan and kana, and the emoji blocks, where
# newer Pythons know emoji (🫨, 🩷) that this one does not.
_WIDE_UNASSIGNED = (
    (0x2E80, 0x303E), (0x31C0, 0x31EF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x16FE0, 0x18DFF),
    (0x1B000, 0x1B2FF), (0x1F000, 0x1FAFF), (0x20000, 0x3FFFD),
)  # fmt: skip


@functools.lru_cache(maxsize=4096)
def char_width(char: str) -> int:
    """Cells one code point takes on its own: 0, 1 or 2 (Rich's ``get_character_cell_size``).

    Control characters take none here, as in Rich; :func:`printable` has shown them as escapes before anything
    is measured.  Every combining mark takes none, spacing ones (``Mc``) too, as Rich's table has it: a terminal
    that gives an Indic vowel sign a cell of its own draws such a name wider than it was laid out, in the UI as
    here.  East Asian Wide and Fullwidth take two, nothing else does (Ambiguous is one, as outside a CJK locale).
    """
    code = ord(char)
    if code < 0x20 or 0x7F <= code < 0xA0:
        return 0
    override = _OVERRIDES.get(code)
    if override is not None:
        return override
    category = unicodedata.category(char)
    if category[0] == "M" or category in ("Cf", "Zl", "Zp"):
        return 0
    if category == "Cn":
        return 2 if any(start <= code <= end for start, end in _WIDE_UNASSIGNED) else 1
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _clusters(text: str) -> list[tuple[int, int]]:
    """(end index, cells) of each cluster of ``text``: a character that takes cells and the zero-width ones after
    it (combining marks, selectors, a joiner with the emoji it joins), which a cut must keep together.

    As Rich's ``cell_len`` measures: a joiner swallows the character after it (the sequence is drawn as one
    glyph), and U+FE0F widens the character before it to two cells when that is a text-presentation emoji.
    A cluster can take no cells only at the start (zero-width characters with nothing before them).
    """
    clusters: list[tuple[int, int]] = []
    widens = False  # whether a U+FE0F now would widen the last measured character
    at, end = 0, len(text)
    while at < end:
        char = text[at]
        if char in (_ZWJ, _VS16):
            if char == _ZWJ:
                after, extra = min(end, at + 2), 0
            else:
                after, extra, widens = at + 1, int(widens), False
            if clusters:
                clusters[-1] = (after, clusters[-1][1] + extra)
            else:
                clusters.append((after, 0))
            at = after
            continue
        cells = char_width(char)
        if cells:
            clusters.append((at + 1, cells))
            widens = char in NARROW_TO_WIDE
        elif clusters:
            clusters[-1] = (at + 1, clusters[-1][1])
        else:
            clusters.append((at + 1, 0))
        at += 1
    return clusters


def _simple(text: str) -> bool:
    """Printable ASCII: one cell per character, the fast path for almost every name."""
    return text.isascii() and text.isprintable()


@functools.lru_cache(maxsize=4096)
def _measured(text: str) -> int:
    return sum(cells for _, cells in _clusters(text))


def cell_width(text: str) -> int:
    """The cells ``text`` takes in a terminal (Rich's ``cell_len``): CJK two, combining marks none, ..."""
    return len(text) if _simple(text) else _measured(text)


def _cut(text: str, cells: int) -> str:
    """The longest start of ``text`` that fits ``cells`` whole clusters, padded with spaces to exactly ``cells``
    (a wide character that would straddle the edge is left out, its place kept by a space).  A cut to no cells
    keeps nothing, not even leading zero-width marks, as Rich's ``set_cell_size`` does."""
    if _simple(text) or cells <= 0:
        return text[: max(0, cells)]
    used, kept = 0, 0
    for end, width in _clusters(text):
        if used + width > cells:
            break
        used, kept = used + width, end
    return text[:kept] + " " * (cells - used)


def fit(text: str, width: int, align: Literal["left", "right"] = "left") -> str:
    """``text`` in exactly ``width`` cells: padded with spaces (on the right, or the left for ``align="right"``),
    or cut ending in "…" when it does not fit.  The cut falls between clusters, so a combining mark stays with
    its base and half a wide character is never drawn (a space takes its place before the "…")."""
    if width <= 0:
        return ""
    cells = cell_width(text)
    if cells > width:
        return _cut(text, width - 1) + _ELLIPSIS
    padding = " " * (width - cells)
    return padding + text if align == "right" else text + padding


def truncate(text: str, width: int) -> str:
    """Cut to at most ``width`` cells with an ellipsis; shorter text is returned as it is (not padded)."""
    return text if cell_width(text) <= width else fit(text, width)


def pad(text: str, width: int, align: Literal["left", "right"] = "left") -> str:
    """``text`` padded with spaces to at least ``width`` cells (``str.ljust``/``rjust`` by cells): never cut."""
    missing = width - cell_width(text)
    if missing <= 0:
        return text
    return " " * missing + text if align == "right" else text + " " * missing
