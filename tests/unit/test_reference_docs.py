"""The reference pages of the docs site: generated from the code, up to date, and complete."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_generate"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["openapi.json", "cli.md", "config.md", "http-api.md", "python-api.md"])
def test_each_committed_page_is_what_the_code_gives(generate: ModuleType, page: str) -> None:
    committed = (ROOT / "docs" / "reference" / page).read_text(encoding="utf-8")
    assert committed == generate.PAGES[page](), f"docs/reference/{page} is stale: run `make docs`"


def test_every_command_has_its_entry_with_help(generate: ModuleType) -> None:
    page = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    names = [name for name, _ in generate.commands()]
    assert len(names) > 40 and {"tagops serve", "tagops loop run", "tagops gate"} <= set(names)
    for name, command in generate.commands():
        assert f"\n## {name}\n" in page, name
        assert (command.help or "").strip(), f"{name} has no help text"


def test_every_config_field_is_documented(generate: ModuleType) -> None:
    assert generate.undocumented_fields() == []
    page = (ROOT / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    for model in generate.config_models():
        assert f"\n## {model.__name__}\n" in page
        for name in model.model_fields:
            assert f"| `{name}` |" in page, f"{model.__name__}.{name}"


def test_a_field_comment_is_found_above_the_field_or_in_a_base_class(generate: ModuleType) -> None:
    from tagops.config import MonitorConfig, ScheduleConfig, TuneConfig

    assert generate.field_comment(MonitorConfig, "window_hours").startswith("The window when")
    assert generate.field_comment(ScheduleConfig, "every").startswith("Time between the starts")
    assert generate.field_comment(TuneConfig, "data")  # declared on the model itself or a base class


def test_every_route_of_the_app_is_in_the_http_reference(generate: ModuleType) -> None:
    import json

    schema = json.loads((ROOT / "docs" / "reference" / "openapi.json").read_text(encoding="utf-8"))
    page = (ROOT / "docs" / "reference" / "http-api.md").read_text(encoding="utf-8")
    assert {"/v1/predict", "/v1/feedback", "/healthz", "/readyz", "/v1/admin/rollout"} <= set(schema["paths"])
    for path in schema["paths"]:
        assert f"`{path}`" in page, path


def test_config_field_types_read_as_they_are_written(generate: ModuleType) -> None:
    from typing import Annotated, Literal

    from pydantic import AfterValidator, Field

    from tagops.config.models import LinearParams, RulesParams

    assert generate._type_name(Annotated[float, Field(ge=0.0, le=1.0)] | None) == "float | None"
    assert generate._type_name(Annotated[str, AfterValidator(str.strip)] | None) == "str | None"
    assert generate._type_name(tuple[Annotated[int, Field(ge=1)], ...]) == "tuple[int, ...]"
    assert generate._type_name(dict[str, Annotated[float, Field(ge=0)]]) == "dict[str, float]"
    assert (
        generate._type_name(tuple[RulesParams | LinearParams, ...])
        == "tuple[RulesParams | LinearParams, ...]"
    )
    assert generate._type_name(Literal["ray", "local"] | None) == "Literal['ray', 'local'] | None"
    page = (ROOT / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    assert "Optional[" not in page and ")]" not in page and "tagops.config." not in page
