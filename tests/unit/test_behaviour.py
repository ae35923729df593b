"""The behavioural cases as product data, the check over a predictor, and the gate's pure refusal rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tagops import LABELS
from tagops.config.training import BEHAVIOUR_KINDS
from tagops.workloads.behaviour import (
    CASES,
    REASON_CASES,
    BehaviourCase,
    BehaviourReport,
    behaviour_refusal,
    behaviour_tag,
    check_behaviour,
)

pytestmark = pytest.mark.unit

EXPECTED = {text: expected for case in CASES for text, expected in case.examples}


class FakePredictor:
    """Answers each case text with its expected tag unless ``wrong`` says otherwise; records its calls."""

    def __init__(self, wrong: Mapping[str, str] | None = None) -> None:
        self.wrong = dict(wrong or {})
        self.calls: list[tuple[list[str], list[str]]] = []

    def predict(self, titles: Sequence[str], descriptions: Sequence[str]) -> list[dict[str, Any]]:
        self.calls.append((list(titles), list(descriptions)))
        return [{"tag": self.wrong.get(t, EXPECTED.get(t, "other"))} for t in titles]


def text_of(name: str, index: int = 0) -> str:
    return next(case.examples[index][0] for case in CASES if case.name == name)


def test_the_product_cases_cover_every_kind_and_every_tag() -> None:
    assert {case.kind for case in CASES} == set(BEHAVIOUR_KINDS)
    minimum = [case for case in CASES if case.kind == "minimum_functionality"]
    assert {case.examples[0][1] for case in minimum} == set(LABELS)
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), "case names identify a case in reasons and tags"
    texts = [text for case in CASES for text, _ in case.examples]
    assert len(texts) == len(set(texts))


def test_the_reference_cases_are_kept() -> None:
    """The original invariance, directional and minimum-functionality sentences stay in the product set."""
    for text, tag in [
        ("Transformers applied to NLP have revolutionized machine learning.", "natural-language-processing"),
        ("Transformers applied to NLP have disrupted machine learning.", "natural-language-processing"),
        ("ML applied to text classification.", "natural-language-processing"),
        ("ML applied to image classification.", "computer-vision"),
        ("CNNs for text classification.", "natural-language-processing"),
        (
            "Natural language processing is the next big wave in machine learning.",
            "natural-language-processing",
        ),
        ("MLOps is the next big wave in machine learning.", "mlops"),
        ("This is about graph neural networks.", "other"),
    ]:
        assert EXPECTED[text] == tag


@pytest.mark.parametrize(
    ("kind", "examples", "message"),
    [
        ("minimum_functionality", (("a", "nlp"),), "expected tag 'nlp' is not one of"),
        ("minimum_functionality", (("a", "other"), ("b", "other")), "exactly one text"),
        ("minimum_functionality", (("  ", "other"),), "empty text"),
        ("minimum_functionality", (), "no texts"),
        ("invariance", (("a", "other"),), "two or more texts with one expected tag"),
        ("invariance", (("a", "other"), ("b", "mlops")), "two or more texts with one expected tag"),
        ("directional", (("a", "other"), ("b", "other")), "two or more different tags"),
        ("typo", (("a", "other"),), "unknown kind"),
    ],
)
def test_a_malformed_case_is_refused_naming_it(
    kind: str, examples: tuple[tuple[str, str], ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as error:
        BehaviourCase(kind, "broken", examples)  # type: ignore[arg-type]
    assert "'broken'" in str(error.value)


def test_a_model_that_answers_every_case_passes_in_one_call_with_empty_descriptions() -> None:
    predictor = FakePredictor()
    report = check_behaviour(predictor)
    assert report["passed"] is True
    assert report["failed"] == []
    per_kind = {kind: sum(case.kind == kind for case in CASES) for kind in BEHAVIOUR_KINDS}
    assert report["counts"] == {kind: {"cases": n, "failed": 0} for kind, n in per_kind.items()}
    assert len(predictor.calls) == 1
    titles, descriptions = predictor.calls[0]
    assert titles == list(EXPECTED) and descriptions == [""] * len(titles)


def test_each_wrong_text_is_listed_with_what_the_model_said() -> None:
    atari = text_of("rl-atari")
    disrupted = text_of("revolutionized-disrupted", 1)
    report = check_behaviour(FakePredictor({atari: "computer-vision", disrupted: "mlops"}))
    assert report["passed"] is False
    assert report["failed"] == [
        {
            "kind": "minimum_functionality",
            "name": "rl-atari",
            "text": atari,
            "expected": "other",
            "got": "computer-vision",
        },
        {
            "kind": "invariance",
            "name": "revolutionized-disrupted",
            "text": disrupted,
            "expected": "natural-language-processing",
            "got": "mlops",
        },
    ]
    assert report["counts"]["minimum_functionality"]["failed"] == 1
    assert report["counts"]["invariance"] == {"cases": 1, "failed": 1}
    assert report["counts"]["directional"]["failed"] == 0


def test_a_directional_case_fails_when_the_topic_change_does_not_move_the_tag() -> None:
    image = text_of("text-image", 1)
    report = check_behaviour(FakePredictor({image: "natural-language-processing"}))
    assert [(f["kind"], f["name"], f["got"]) for f in report["failed"]] == [
        ("directional", "text-image", "natural-language-processing")
    ]


def test_the_model_threshold_decides_through_predict() -> None:
    """The check reads only ``tag``: an abstention to ``other`` (the model's threshold) is what counts."""
    report = check_behaviour(FakePredictor(dict.fromkeys(EXPECTED, "other")))
    assert {f["name"] for f in report["failed"]} == {
        case.name for case in CASES if any(tag != "other" for _, tag in case.examples)
    }


def test_a_predictor_that_drops_results_is_an_error() -> None:
    class Short(FakePredictor):
        def predict(self, titles: Sequence[str], descriptions: Sequence[str]) -> list[dict[str, Any]]:
            return super().predict(titles, descriptions)[:-1]

    with pytest.raises(ValueError, match="results for"):
        check_behaviour(Short())


def test_the_refusal_names_case_text_answer_and_expectation() -> None:
    passed: BehaviourReport = check_behaviour(FakePredictor())
    assert behaviour_refusal(passed, BEHAVIOUR_KINDS) is None
    reason = behaviour_refusal(
        check_behaviour(FakePredictor({text_of("rl-atari"): "computer-vision"})), BEHAVIOUR_KINDS
    )
    assert reason == (
        "behaviour: minimum_functionality case 'rl-atari' "
        "('Reinforcement learning agents for Atari games.'): got 'computer-vision', expected 'other'"
    )


def test_only_the_listed_kinds_refuse_and_minimum_functionality_comes_first() -> None:
    report = check_behaviour(
        FakePredictor({text_of("revolutionized-disrupted"): "mlops", text_of("registry-tracker"): "other"})
    )
    both = behaviour_refusal(report, BEHAVIOUR_KINDS)
    assert both is not None and both.index("'registry-tracker'") < both.index("'revolutionized-disrupted'")
    assert behaviour_refusal(report, ["invariance"]) == (
        "behaviour: invariance case 'revolutionized-disrupted' "
        "('Transformers applied to NLP have revolutionized machine learning.'): "
        "got 'mlops', expected 'natural-language-processing'"
    )
    assert behaviour_refusal(report, ["directional"]) is None
    assert behaviour_refusal(report, []) is None


def test_a_long_refusal_names_the_first_cases_and_counts_the_rest() -> None:
    names = [case.name for case in CASES if case.kind == "minimum_functionality"]
    wrong = {text_of(name): "mlops" if EXPECTED[text_of(name)] != "mlops" else "other" for name in names}
    reason = behaviour_refusal(check_behaviour(FakePredictor(wrong)), BEHAVIOUR_KINDS)
    assert reason is not None
    assert reason.count(" case '") == REASON_CASES
    assert reason.endswith(f"; and {len(names) - REASON_CASES} more")


def test_the_registry_tag_sums_the_report_up() -> None:
    assert behaviour_tag(None) == "not checked"
    assert behaviour_tag(check_behaviour(FakePredictor())) == "passed"
    report = check_behaviour(
        FakePredictor({text_of("text-image"): "other", text_of("text-image", 1): "other"})
    )
    assert len(report["failed"]) == 2
    assert behaviour_tag(report) == "failed: text-image"  # each case once
