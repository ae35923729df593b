"""The Ray runtime edge: relayed messages go to stderr; a lean embedded head for serving; loopback kept;
a cluster address nobody answers on is refused at once."""

from __future__ import annotations

import pytest

from tagops.errors import TagopsError
from tagops.runtime import check_ray_address, keep_node_on_loopback, send_ray_messages_to_stderr
from tagops.settings import Settings

pytestmark = pytest.mark.unit


def test_raylet_messages_are_printed_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from ray._private import worker

    before = worker.print_to_stdstream  # may already be wrapped by a Ray session earlier in this process
    original = getattr(before, "__wrapped__", before)
    worker.print_to_stdstream = original
    try:
        send_ray_messages_to_stderr()
        send_ray_messages_to_stderr()  # idempotent: wrapped once
        message = {"lines": ["WARNING: 4 PYTHON worker processes have been started"], "pid": "raylet"}
        worker.print_to_stdstream({**message, "is_err": False}, ignore_prefix=False)
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "4 PYTHON worker processes" in captured.err
        assert worker.print_to_stdstream.__wrapped__ is original  # type: ignore[attr-defined]  # not wrapped twice
    finally:
        worker.print_to_stdstream = before


def test_a_lean_head_node_skips_its_service_processes_only_inside_the_block() -> None:
    from ray._private.node import Node

    from tagops.runtime import LEAN_SKIPPED_PROCESSES, lean_head_node

    originals = {name: getattr(Node, name) for name in LEAN_SKIPPED_PROCESSES}
    with lean_head_node(enabled=False):
        assert all(getattr(Node, name) is method for name, method in originals.items())
    with lean_head_node(enabled=True):
        for name, method in originals.items():
            assert getattr(Node, name) is not method
            assert getattr(Node, name)(object()) is None  # started nothing
    assert all(getattr(Node, name) is method for name, method in originals.items())
    with pytest.raises(RuntimeError), lean_head_node(enabled=True):  # restored when ray.init fails too
        raise RuntimeError("ray.init failed")
    assert all(getattr(Node, name) is method for name, method in originals.items())


@pytest.mark.parametrize(("variable", "clusters"), [("0", False), ("1", True)])
def test_a_ray_imported_before_the_loopback_setting_still_keeps_the_node_on_loopback(
    monkeypatch: pytest.MonkeyPatch, variable: str, clusters: bool
) -> None:
    from ray._private import ray_constants, services, worker

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)  # as read before the variable was set
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", variable)
    keep_node_on_loopback()
    assert ray_constants.ENABLE_RAY_CLUSTER is clusters  # a 1 the user set is left alone
    if not clusters and worker._global_node is None:  # no session here: the address is looked up
        assert services.get_node_ip_address() == services.get_localhost_ip()


def test_a_cluster_address_nobody_answers_on_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        open_port = listener.getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            closed_port = closed.getsockname()[1]
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        for address in (f"127.0.0.1:{open_port}", f"ray://127.0.0.1:{open_port}", "auto", "127.0.0.1"):
            monkeypatch.setenv("TAGOPS_RAY_ADDRESS", address)
            check_ray_address(Settings())  # a head that accepts, or a form left to Ray
        for address in (f"127.0.0.1:{closed_port}", f"ray://127.0.0.1:{closed_port}"):
            monkeypatch.setenv("TAGOPS_RAY_ADDRESS", address)
            with pytest.raises(TagopsError) as error:
                check_ray_address(Settings())
            assert str(error.value) == (
                f"cannot reach the Ray cluster at {address} (TAGOPS_RAY_ADDRESS): Connection refused"
            )
        monkeypatch.delenv("TAGOPS_RAY_ADDRESS")
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:abc")
        with pytest.raises(TagopsError, match=r"at 127\.0\.0\.1:abc \(RAY_ADDRESS\): Port could not be cast"):
            check_ray_address(Settings())
