"""The image's health check: exit 0 when a URL answers 200, else 1 with the reason on stderr.

    python docker/healthcheck.py [URL] [--timeout SECONDS]

URL defaults to ``TAGOPS_HEALTHCHECK_URL``, else ``http://127.0.0.1:$TAGOPS_PORT/healthz`` (port 8000), the
API's liveness endpoint. The standard library only: slim images have no curl, and the check must not
depend on the environment it checks. It never exits 2, which Docker reserves.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage error is a failed check (exit 1), not argparse's exit 2."""
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def default_url() -> str:
    """The URL to check when none is given: ``TAGOPS_HEALTHCHECK_URL``, else this host's ``/healthz``."""
    port = os.environ.get("TAGOPS_PORT") or "8000"
    return os.environ.get("TAGOPS_HEALTHCHECK_URL") or f"http://127.0.0.1:{port}/healthz"


def check(url: str, timeout: float) -> str | None:
    """``None`` when ``url`` answers 200 within ``timeout`` seconds, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        return f"{url}: HTTP {error.code}"
    except (OSError, ValueError) as error:  # refused, timed out, unresolvable, or not a URL
        return f"{url}: {error}"
    return None if status == 200 else f"{url}: HTTP {status}"


def main(argv: list[str] | None = None) -> int:
    """Check once; the exit status for Docker's HEALTHCHECK."""
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", default=None, help="URL to check (default: see above).")
    parser.add_argument("--timeout", type=float, default=5.0, help="Seconds to wait for the answer.")
    args = parser.parse_args(argv)
    problem = check(args.url or default_url(), args.timeout)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
