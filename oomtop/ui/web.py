"""``oomtop web``: the live view in a browser, served by textual-serve.

Each browser tab that opens the page gets a process of its own, ``python -m oomtop <the source flags>``: the
same app as in a terminal, drawn by Textual's web driver (textual-serve sets ``TEXTUAL_DRIVER`` for it; see
:func:`oomtop.cli.on_a_terminal`) and shown by xterm.js in the page. Closing the tab ends that process.

There is no login and no TLS: anyone who reaches the port sees the node, so the default listens on loopback
only, the start line says so, and a non-loopback address gets a stronger warning. On a loopback address a
request must name a loopback host (a DNS-rebinding page cannot), and the websocket refuses another site's page
(``Origin``): a web page open in the same browser cannot read the node through it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import re
import shlex
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from oomtop.listen import parse_listen

DEFAULT_LISTEN = "127.0.0.1:9843"  # next to oomtop serve's 9842
DIR_FLAGS = ("host_root", "sysfs_root", "procfs_root", "metadata_root")
HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$")


class WebError(Exception):
    """Something that stops ``oomtop web`` before it serves: one line on stderr, exit status 2."""


def add_parser(commands: Any, add_source_flags: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """The subcommand (``commands`` is the CLI's subparsers; the source flags are the CLI's, passed in)."""
    web: argparse.ArgumentParser = commands.add_parser(
        "web",
        help="serve the live view to a browser (textual-serve)",
        description="Serve the live view over HTTP and a websocket: every browser tab that opens the page gets "
        "its own oomtop, reading this node with the flags given here, and the same keys as in a terminal. "
        "No login, no TLS: anyone who can reach the port sees the node.",
        epilog=f"The default listens on loopback only ({DEFAULT_LISTEN}); from another machine, prefer an SSH "
        f"tunnel (ssh -L 9843:127.0.0.1:9843 NODE) to --listen 0.0.0.0:9843.",
    )
    web.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}; port 0 picks a free one)",
    )
    web.add_argument(
        "--theme",
        metavar="NAME",
        default=argparse.SUPPRESS,  # given before "web", the top-level value stands
        help="colour theme (see oomtop --list-themes)",
    )
    add_source_flags(web)
    return web


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9843`` for IPv6)."""
    try:
        return parse_listen(text, DEFAULT_LISTEN)
    except ValueError as error:
        raise WebError(f"--listen: {error}") from None


def session_command(args: argparse.Namespace) -> str:
    """The shell command textual-serve runs for each browser session: this Python, ``-m oomtop`` and the flags."""
    argv = [sys.executable, "-m", "oomtop", "--interval", repr(args.interval)]
    for name in DIR_FLAGS:
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", os.path.abspath(value)]
    if args.kmsg is not None:
        argv += ["--kmsg", args.kmsg if args.kmsg == "none" else os.path.abspath(args.kmsg)]
    if args.redact_cmdline:
        argv.append("--redact-cmdline")
    if args.theme:
        argv += ["--theme", args.theme]
    return shlex.join(argv)


def check_theme(name: str | None) -> None:
    """A theme that does not exist is refused here, once, not by every session's process."""
    from oomtop.ui.themes import discover, resolve

    try:
        resolve(name, discover())
    except KeyError:
        raise WebError(f"no theme named {name!r} (oomtop --list-themes shows them)") from None


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, made here so that a bad address or a port in use is one line, not a traceback."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise WebError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart within TIME_WAIT; not a live port
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise WebError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.setblocking(False)
    return sock


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def loopback_name(host: str) -> bool:
    """Whether a Host header (``name[:port]``, ``[v6][:port]``) names this machine for every resolver: ``localhost``
    or a loopback address."""
    name = host[1 : host.find("]")] if host.startswith("[") else host.partition(":")[0]
    name = name.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


def start_line(address: tuple[str, int], loopback: bool) -> str:
    host, port = address[0], address[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    if loopback:
        return (
            f"oomtop web: the live view on {url} (one oomtop per browser tab); anyone who can reach this port "
            "sees this node (its pods and processes), with no login"
        )
    return (
        f"oomtop web: the live view on {url} (one oomtop per browser tab); WARNING: {host} is not loopback: "
        f"anyone on the network who can reach port {port} sees this node (its pods and processes), with no login "
        f"and no TLS (an SSH tunnel to the default {DEFAULT_LISTEN} is safer)"
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 2 with one line on stderr when it cannot start."""
    try:
        try:
            import textual_serve.server  # noqa: F401
        except ImportError:
            raise WebError("textual-serve is not installed (pip install textual-serve)") from None
        host, port = listen_address(args.listen)
        check_theme(args.theme)
        sock = bind(host, port)
    except WebError as error:
        print(f"oomtop web: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(sock, session_command(args)))
    finally:
        sock.close()


async def _serve(sock: socket.socket, command: str) -> int:
    from aiohttp import web
    from textual_serve.server import Server

    bound = sock.getsockname()
    loopback = is_loopback(bound[0])
    sessions: set[asyncio.Task[Any]] = set()

    class OomtopServer(Server):
        async def on_startup(self, app: web.Application) -> None:
            """Quiet: the one start line is :func:`start_line`'s (textual-serve prints a banner here)."""

        async def handle_index(self, request: web.Request) -> Any:
            # The page's websocket URL follows the address the browser used (textual-serve builds it from one
            # fixed public URL, which for 0.0.0.0 would be no address at all).
            self.public_url = f"http://{request.host}"
            return await super().handle_index(request)

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            task = asyncio.current_task()
            assert task is not None
            sessions.add(task)
            try:
                return await super().handle_websocket(request)
            finally:
                sessions.discard(task)

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        host = request.host
        if not HOST_HEADER.match(host) or (loopback and not loopback_name(host)):
            return web.Response(status=403, text="oomtop web: this server answers on loopback names only\n")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != host:
            return web.Response(status=403, text="oomtop web: a page of another site may not open the live view\n")
        return await handler(request)

    server = OomtopServer(command, host=bound[0], port=bound[1], title="oomtop")
    app = await server._make_app()
    app.middlewares.append(guard)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await web.SockSite(runner, sock, shutdown_timeout=5.0).start()
        print(start_line(bound, loopback), file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        # Each session's handler tells its oomtop to quit and waits for it when cancelled; then the server goes.
        for task in list(sessions):
            task.cancel()
        if sessions:
            await asyncio.wait(list(sessions), timeout=5.0)
        await runner.cleanup()
        _end_children()
    return 0


def _end_children() -> None:
    """Any session process still there after the server stopped (one that ignored its quit) is ended."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=3.0)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
