"""Where the registry lives, as messages name it, and whether a tracking server is there at all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagops.errors import RegistryError

if TYPE_CHECKING:
    from tagops.settings import Settings

#: How long a tracking server has to answer the check that it is there at all (seconds).
SERVER_CHECK_TIMEOUT_S = 10.0
#: Tracking URIs that answered in this process: a registry is opened many times per command (and per
#: console page), and the check is for a server that is not there at all, not one that went away later.
_ANSWERED: set[str] = set()


def tracking_place(settings: Settings) -> str:
    """The tracking URI as messages name it: password masked, with the variable that set it."""
    from tagops.settings import masked_uri

    variable = settings.tracking_uri_variable
    uri = masked_uri(settings.tracking_uri)
    return f"MLflow at {uri}" + (f" ({variable})" if variable else "")


def check_tracking_server(settings: Settings) -> None:
    """Fail at once when an HTTP tracking server cannot be reached at all.

    Why: MLflow retries a refused connection for minutes with backoff, so a mistyped or stopped server
    would look like a command that hangs. Any HTTP answer counts as there (authentication and the
    rest are MLflow's to report); only a connection that cannot be made, a name that does not resolve
    or no answer within :data:`SERVER_CHECK_TIMEOUT_S` is refused.

    Raises:
        RegistryError: naming the URI, its variable and the reason.

    """
    from urllib.error import HTTPError, URLError
    from urllib.parse import urlsplit
    from urllib.request import urlopen

    parts = urlsplit(settings.tracking_uri)
    if parts.scheme not in ("http", "https") or settings.tracking_uri in _ANSWERED:
        return
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    try:
        port = parts.port
    except ValueError as error:  # "host:abc"
        raise RegistryError(f"{tracking_place(settings)}: {error}") from None
    # Credentials in the URL are not sent to the check (MLflow takes them from its own variables).
    address = parts._replace(netloc=host + (f":{port}" if port else ""), query="", fragment="")
    try:
        with urlopen(address.geturl().rstrip("/") + "/health", timeout=SERVER_CHECK_TIMEOUT_S):
            pass
    except HTTPError:
        pass  # it answered
    except (URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror
        raise RegistryError(f"cannot reach {tracking_place(settings)}: {reason}") from None
    _ANSWERED.add(settings.tracking_uri)
