"""Behavioural tests of the trained models (the reference system's checks), title only, empty description.

Invariance: wording that does not change the topic does not change the prediction. Directional: wording that
changes the topic changes it. Minimum functionality: plain statements of a topic are recognised.
"""

from __future__ import annotations

import pytest

from tagops.inference.predictor import Predictor
from tests.model.conftest import FAMILIES

pytestmark = pytest.mark.model

CV = "computer-vision"
NLP = "natural-language-processing"

INVARIANCE = [
    ("revolutionized", "Transformers applied to NLP have revolutionized machine learning.", NLP),
    ("disrupted", "Transformers applied to NLP have disrupted machine learning.", NLP),
]
DIRECTIONAL = [
    ("text", "ML applied to text classification.", NLP),
    ("image", "ML applied to image classification.", CV),
    ("cnn-text", "CNNs for text classification.", NLP),
]
MINIMUM_FUNCTIONALITY = [
    ("nlp", "Natural language processing is the next big wave in machine learning.", NLP),
    ("mlops", "MLOps is the next big wave in machine learning.", "mlops"),
    ("graphs", "This is about graph neural networks.", "other"),
]

# A case a model fails is marked here, one (family, case) at a time, with the reason: never weakened.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def _cases(kind: str, cases: list[tuple[str, str, str]]) -> list[object]:
    params = []
    for family in FAMILIES:
        for name, title, expected in cases:
            marks = []
            if (family, name) in KNOWN_FAILURES:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[family, name]))
            params.append(pytest.param(family, title, expected, id=f"{family}-{kind}-{name}", marks=marks))
    return params


def _tag(predictor: Predictor, title: str) -> str:
    tag: str = predictor.predict([title], [""])[0]["tag"]
    return tag


@pytest.mark.parametrize(("family", "title", "expected"), _cases("invariance", INVARIANCE))
def test_invariance(predictors: dict[str, Predictor], family: str, title: str, expected: str) -> None:
    assert _tag(predictors[family], title) == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_invariance_pair_agrees(predictors: dict[str, Predictor], family: str) -> None:
    titles = [title for _, title, _ in INVARIANCE]
    results = predictors[family].predict(titles, [""] * len(titles))
    assert results[0]["tag"] == results[1]["tag"]


@pytest.mark.parametrize(("family", "title", "expected"), _cases("directional", DIRECTIONAL))
def test_directional(predictors: dict[str, Predictor], family: str, title: str, expected: str) -> None:
    assert _tag(predictors[family], title) == expected


@pytest.mark.parametrize(
    ("family", "title", "expected"), _cases("minimum-functionality", MINIMUM_FUNCTIONALITY)
)
def test_minimum_functionality(
    predictors: dict[str, Predictor], family: str, title: str, expected: str
) -> None:
    assert _tag(predictors[family], title) == expected
