"""The product's behavioural cases (:data:`tagops.workloads.behaviour.CASES`) on every model family.

Each family is trained on the train split of the real data (``conftest.py``) and checked as the promotion
gate checks a challenger: :func:`~tagops.workloads.behaviour.check_behaviour`, all cases in one call,
title only, empty description, through ``Predictor.predict`` (so the model's own threshold applies). One
test per (family, case) says which case a family fails; a failure the gate would refuse today is listed
in ``KNOWN_FAILURES`` with its reason, never removed by weakening the case.
"""

from __future__ import annotations

import pytest

from tagops.config.training import BEHAVIOUR_KINDS
from tagops.workloads.behaviour import (
    CASES,
    BehaviourCase,
    BehaviourReport,
    behaviour_refusal,
    check_behaviour,
)
from tests.model.conftest import ALL_FAMILIES, predictor_of

pytestmark = pytest.mark.model

#: (family, case name) -> why the family fails it. Strict: a case that starts passing must leave the list.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

#: Families that need minutes to fit (see conftest.py); their tests are also marked slow.
SLOW_FAMILIES = ("transformer", "ensemble")


def _params() -> list[object]:
    params = []
    for family in ALL_FAMILIES:
        for case in CASES:
            marks: list[pytest.MarkDecorator] = []
            if family in SLOW_FAMILIES:
                marks.append(pytest.mark.slow)
            if (family, case.name) in KNOWN_FAILURES:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[family, case.name]))
            params.append(pytest.param(family, case, id=f"{family}-{case.kind}-{case.name}", marks=marks))
    return params


@pytest.fixture(scope="module")
def reports() -> dict[str, BehaviourReport]:
    """Each family's report, computed once (all cases in one call, as the gate does)."""
    return {}


def _report(
    request: pytest.FixtureRequest, reports: dict[str, BehaviourReport], family: str
) -> BehaviourReport:
    if family not in reports:
        reports[family] = check_behaviour(predictor_of(request, family))
    return reports[family]


@pytest.mark.parametrize(("family", "case"), _params())
def test_case(
    request: pytest.FixtureRequest, reports: dict[str, BehaviourReport], family: str, case: BehaviourCase
) -> None:
    misses = [f for f in _report(request, reports, family)["failed"] if f["name"] == case.name]
    assert misses == [], "; ".join(f"{f['text']!r}: got {f['got']}, expected {f['expected']}" for f in misses)


@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=[pytest.mark.slow] if f in SLOW_FAMILIES else []) for f in ALL_FAMILIES]
)
def test_the_gate_verdict_follows_the_known_failures(
    request: pytest.FixtureRequest, reports: dict[str, BehaviourReport], family: str
) -> None:
    """The default gate refuses a family exactly when it fails a case, and only the known ones."""
    report = _report(request, reports, family)
    known = {name for (f, name) in KNOWN_FAILURES if f == family}
    assert {f["name"] for f in report["failed"]} == known
    assert (behaviour_refusal(report, BEHAVIOUR_KINDS) is None) == (not known)
