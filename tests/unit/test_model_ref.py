"""The model-reference grammar: registry aliases, registry versions and folders, parsed in one place."""

from __future__ import annotations

import pytest

from tagops.errors import RegistryError
from tagops.model_ref import DEFAULT_MODEL, DEFAULT_MODEL_URI, ModelRef

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:/tagops@champion", ModelRef(name="tagops", alias="champion")),
        ("models:/tagops@my-alias_2", ModelRef(name="tagops", alias="my-alias_2")),
        ("models:/tagops/12", ModelRef(name="tagops", version=12)),
        ("runs/model", ModelRef(folder="runs/model")),
        ("/abs/model", ModelRef(folder="/abs/model")),
    ],
)
def test_parse_reads_each_form_and_prints_it_back(text: str, expected: ModelRef) -> None:
    ref = ModelRef.parse(text)
    assert ref == expected
    assert str(ref) == text
    assert ref.in_registry is (expected.folder is None)


@pytest.mark.parametrize(
    "text", ["models:/", "models:/tagops", "models:/tagops/x", "models:/a/b/1", "models:/t@"]
)
def test_a_malformed_registry_reference_is_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(
        RegistryError, match=r"not a model URI \(expected models:/NAME@ALIAS or models:/NAME/VERSION\)"
    ):
        ModelRef.parse(text)


def test_the_default_is_the_champion_and_a_version_names_one_registry_version() -> None:
    assert DEFAULT_MODEL_URI == "models:/tagops@champion"
    assert ModelRef.parse(DEFAULT_MODEL_URI) == DEFAULT_MODEL
    assert str(ModelRef.registered("tagops", "3")) == "models:/tagops/3"
