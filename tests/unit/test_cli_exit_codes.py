"""The exit statuses: one table, used by every command that picks a status, and shown to users."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagops.cli import app
from tagops.cli.exit_codes import MEANINGS, ExitCode, summary

pytestmark = pytest.mark.unit

CLI = Path(__file__).resolve().parents[2] / "src" / "tagops" / "cli"


def exits(tree: ast.AST) -> list[ast.Call]:
    """Every ``typer.Exit(...)``, ``sys.exit(...)`` and ``SystemExit(...)`` call in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        if (owner, name) in {("typer", "Exit"), ("sys", "exit"), ("", "SystemExit"), ("", "Exit")}:
            found.append(node)
    return found


def codes_named(expression: ast.expr) -> list[str] | None:
    """The ``ExitCode`` members an exit's argument names (a member, or a choice between members)."""
    if isinstance(expression, ast.IfExp):
        body, orelse = codes_named(expression.body), codes_named(expression.orelse)
        return None if body is None or orelse is None else body + orelse
    if (
        isinstance(expression, ast.Attribute)
        and isinstance(expression.value, ast.Name)
        and expression.value.id == "ExitCode"
    ):
        return [expression.attr]
    return None


def test_every_exit_of_the_cli_uses_a_code_from_the_table() -> None:
    checked = 0
    for path in sorted(CLI.glob("*.py")):
        for call in exits(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.name}:{call.lineno}"
            arguments = [*call.args, *(k.value for k in call.keywords if k.arg == "code")]
            assert len(arguments) == 1, f"{where}: an exit without a status from ExitCode"
            names = codes_named(arguments[0])
            assert names is not None, (
                f"{where}: exit with {ast.unparse(arguments[0])}, not an ExitCode member"
            )
            assert set(names) <= set(ExitCode.__members__), f"{where}: {names}"
            checked += 1
    assert checked >= 8  # gate, monitor, loop run, rollout (3), submit (2), main (2)


def test_every_code_is_explained_once_and_keeps_its_number() -> None:
    assert set(MEANINGS) == set(ExitCode)
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4, 5, 130]
    assert summary() == "0 ok, 1 error, 2 usage, 3 alarm, 4 refused, 5 undecided, 130 interrupted"


def test_the_help_shows_the_table_in_one_line_and_usage_errors_exit_2() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["--help"])
    assert shown.exit_code == ExitCode.OK
    assert "Exit status: 0 ok, 1 error, 2 usage" in " ".join(shown.output.split())
    assert runner.invoke(app, ["gate", "--no-such-option"]).exit_code == ExitCode.USAGE
