"""Behavioural cases every model must pass, and the check the promotion gate runs on a challenger.

Three kinds of case, each a short title with an empty description, tagged through
``Predictor.predict`` (so the model's own abstention threshold applies, as in serving):

* **minimum functionality**: a plain statement of a topic gets that topic's tag;
* **invariance**: wording that does not change the topic does not change the tag (a group of texts,
  every one with the same expected tag);
* **directional**: wording that changes the topic changes the tag (variants of one sentence, each with
  its own expected tag).

Expected tags follow the product's label guide (reinforcement learning, graph learning and forecasting
are ``other``; a model registry, an experiment tracker or model serving is ``mlops``; medical and
satellite imagery are ``computer-vision``; NER and translation are ``natural-language-processing``).

``tagops promote`` and ``tagops retrain`` refuse a challenger that fails a case of a kind listed in the
gate's ``behaviour`` field (:class:`tagops.config.GateConfig`); :func:`behaviour_refusal` is that rule,
pure. ``tests/model/test_behaviour.py`` runs the same cases on every family trained on the real data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from tagops import LABELS
from tagops.config.training import BEHAVIOUR_KINDS, BehaviourKind

CV = "computer-vision"
NLP = "natural-language-processing"
MLOPS = "mlops"
OTHER = "other"

#: How many failing cases a refusal's reason names (the report in the history keeps them all).
REASON_CASES = 3


@dataclass(frozen=True)
class BehaviourCase:
    """One case: its kind, a short name, and each text with the tag it must get."""

    kind: BehaviourKind
    name: str
    examples: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        where = f"behaviour case {self.kind}/{self.name!r}"
        if self.kind not in BEHAVIOUR_KINDS:
            raise ValueError(f"{where}: unknown kind (use one of {list(BEHAVIOUR_KINDS)})")
        if not self.examples:
            raise ValueError(f"{where}: no texts")
        for text, expected in self.examples:
            if not text.strip():
                raise ValueError(f"{where}: empty text")
            if expected not in LABELS:
                raise ValueError(f"{where}: expected tag {expected!r} is not one of {list(LABELS)}")
        tags = {expected for _, expected in self.examples}
        if self.kind == "minimum_functionality" and len(self.examples) != 1:
            raise ValueError(f"{where}: a minimum-functionality case has exactly one text")
        if self.kind == "invariance" and (len(self.examples) < 2 or len(tags) != 1):
            raise ValueError(f"{where}: an invariance case has two or more texts with one expected tag")
        if self.kind == "directional" and len(tags) < 2:
            raise ValueError(f"{where}: a directional case has texts with two or more different tags")


def _mft(name: str, text: str, expected: str) -> BehaviourCase:
    return BehaviourCase("minimum_functionality", name, ((text, expected),))


def _invariance(name: str, texts: Sequence[str], expected: str) -> BehaviourCase:
    return BehaviourCase("invariance", name, tuple((text, expected) for text in texts))


def _directional(name: str, *examples: tuple[str, str]) -> BehaviourCase:
    return BehaviourCase("directional", name, examples)


#: The product's cases. Add a case only when the label guide makes its tag unambiguous; never loosen one
#: because a model fails it (the model is what has to change).
CASES: tuple[BehaviourCase, ...] = (
    _mft("nlp", "Natural language processing is the next big wave in machine learning.", NLP),
    _mft("ner-legal", "Named entity recognition for legal documents.", NLP),
    _mft("translation", "Machine translation from English to German.", NLP),
    _mft("detection-satellite", "Object detection in satellite images.", CV),
    _mft("segmentation-medical", "Semantic segmentation of medical images.", CV),
    _mft("mlops", "MLOps is the next big wave in machine learning.", MLOPS),
    _mft("registry-tracker", "A model registry and experiment tracker for ML teams.", MLOPS),
    _mft("serving-kubernetes", "Deploying and serving machine learning models on Kubernetes.", MLOPS),
    _mft("graphs", "This is about graph neural networks.", OTHER),
    _mft("rl-atari", "Reinforcement learning agents for Atari games.", OTHER),
    _mft("forecasting", "Time series forecasting of electricity demand.", OTHER),
    _invariance(
        "revolutionized-disrupted",
        (
            "Transformers applied to NLP have revolutionized machine learning.",
            "Transformers applied to NLP have disrupted machine learning.",
        ),
        NLP,
    ),
    _directional(
        "text-image",
        ("ML applied to text classification.", NLP),
        ("ML applied to image classification.", CV),
    ),
    _directional(
        "cnn-text-image",
        ("CNNs for text classification.", NLP),
        ("CNNs for image classification.", CV),
    ),
)


class SupportsPredict(Protocol):
    """What the check needs of a model: :meth:`tagops.inference.predictor.Predictor.predict`."""

    def predict(self, titles: Sequence[str], descriptions: Sequence[str]) -> list[dict[str, Any]]:
        """One result with a ``tag`` per (title, description)."""
        ...


class BehaviourFailure(TypedDict):
    """One text that did not get its expected tag."""

    kind: str
    name: str
    text: str
    expected: str
    got: str


class KindCount(TypedDict):
    """Cases of one kind: how many were checked and how many failed (a case fails on any text)."""

    cases: int
    failed: int


class BehaviourReport(TypedDict):
    """The outcome of :func:`check_behaviour`: JSON-ready, recorded in the promotion history."""

    passed: bool
    failed: list[BehaviourFailure]
    counts: dict[str, KindCount]


def check_behaviour(predictor: SupportsPredict, cases: Sequence[BehaviourCase] = CASES) -> BehaviourReport:
    """Tag every case's texts (title only, empty description) in one call and list what failed."""
    texts = [text for case in cases for text, _ in case.examples]
    results = predictor.predict(texts, [""] * len(texts))
    if len(results) != len(texts):
        raise ValueError(f"the predictor answered {len(results)} results for {len(texts)} texts")
    tags = [str(result["tag"]) for result in results]
    failed: list[BehaviourFailure] = []
    counts: dict[str, KindCount] = {kind: {"cases": 0, "failed": 0} for kind in BEHAVIOUR_KINDS}
    start = 0
    for case in cases:
        got = tags[start : start + len(case.examples)]
        start += len(case.examples)
        misses = [
            BehaviourFailure(kind=case.kind, name=case.name, text=text, expected=expected, got=tag)
            for (text, expected), tag in zip(case.examples, got, strict=True)
            if tag != expected
        ]
        counts[case.kind]["cases"] += 1
        counts[case.kind]["failed"] += bool(misses)
        failed.extend(misses)
    return {"passed": not failed, "failed": failed, "counts": counts}


def behaviour_refusal(report: BehaviourReport, kinds: Iterable[str]) -> str | None:
    """Why a challenger with this report is refused when cases of ``kinds`` must pass; ``None``: it is not.

    Pure: the gate's rule. The reason names each failing case with its text, what the model said and
    what was expected, minimum-functionality cases first.
    """
    refusing = set(kinds)
    order: dict[str, int] = {kind: i for i, kind in enumerate(BEHAVIOUR_KINDS)}
    misses = sorted(
        (f for f in report["failed"] if f["kind"] in refusing), key=lambda f: order.get(f["kind"], 99)
    )
    if not misses:
        return None
    shown = "; ".join(
        f"{f['kind']} case '{f['name']}' ({f['text']!r}): got '{f['got']}', expected '{f['expected']}'"
        for f in misses[:REASON_CASES]
    )
    more = f"; and {len(misses) - REASON_CASES} more" if len(misses) > REASON_CASES else ""
    return f"behaviour: {shown}{more}"


def behaviour_tag(report: BehaviourReport | None) -> str:
    """The ``gate.behaviour`` registry tag: ``passed``, ``failed: <case names>`` or ``not checked``."""
    if report is None:
        return "not checked"
    if report["passed"]:
        return "passed"
    names = dict.fromkeys(f["name"] for f in report["failed"])  # ordered, once each
    return "failed: " + ", ".join(names)
