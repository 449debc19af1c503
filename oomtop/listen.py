"""``--listen HOST:PORT`` for the commands that serve HTTP (``serve``, ``web``): one reading, one set of errors."""

from __future__ import annotations


def parse_listen(text: str, example: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0: any free port) -> (host, port); ValueError says why not."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT (for example {example}), got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"not a port number: {port_text!r}") from None
    if not 0 <= port < 65536:
        raise ValueError(f"port out of range (0-65535): {port}")
    return host, port
