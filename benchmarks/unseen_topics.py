"""Unseen topics of `other`: how a recipe tags a machine-learning topic its training data never showed.

    python benchmarks/unseen_topics.py [--families linear transformer ensemble] [--seed 1234]
                                       [--engine local|ray] [--config FILE.yaml] [--output FILE.json]

dataset.csv's `other` rows are exactly three of tags.csv's finer topics (reinforcement learning, graph
learning, time series), while the label guide's `other` holds a dozen more (tabular data, recommenders,
audio, causal inference, optimisers...), and text in the wild brings them. The holdout cannot show how a
model treats such a topic: its `other` rows are the same three. This benchmark can, from dataset.csv
alone: for each of the three topics in turn, the recipe is trained as ``benchmarks/crossval.py`` trains
a fold (train/validation split, refit, calibration on validation) on dataset.csv without that topic's
rows and without a stratified fifth of the rest, then scored as served (each model's own temperature and
abstention threshold) on

- the withheld topic's rows: the share answered `other` (what the label guide asks for) and what the
  others were called;
- the withheld fifth: weighted F1 on topics the recipe did see, so that a recipe cannot buy the first
  figure by answering `other` to everything;
- both together: weighted F1 where the withheld topic is a part of `other`, as in the wild.

The holdout and the challenge set are not used. Prints a table and writes JSON (default
benchmarks/results/unseen_topics.json; for another config, unseen_topics-CONFIG.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossval import augment_train, calibrate_model, pipeline_recipe, train_family
from quality import PIPELINE_CONFIG, config_name, load_real_data, results_path
from stamp import stamp
from tagops import LABELS
from tagops.config import AnyModelParams, DataConfig, EnsembleParams, PipelineConfig
from tagops.data.ingest import read_csv
from tagops.data.stages import split_stage
from tagops.inference.predictor import Predictor
from tagops.metrics import classification_scores
from tagops.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

FAMILIES = ("linear", "transformer", "ensemble")
OTHER = "other"


# --------------------------------------------------------------------------------------------- data
def with_fine_tags(dataset: pd.DataFrame, projects: pd.DataFrame, tags: pd.DataFrame) -> pd.DataFrame:
    """dataset.csv with a ``fine_tag`` column: tags.csv's tag of the same project (rows of tags.csv label
    rows of projects.csv by position; projects are matched to dataset.csv by id).

    Raises:
        ValueError: if the files do not line up: lengths differ, a project of dataset.csv is missing, or
            a finer tag does not collapse to the project's tag (a finer topic collapses only to `other`).

    """
    if len(projects) != len(tags):
        raise ValueError(f"projects.csv has {len(projects)} rows but tags.csv has {len(tags)}")
    fine_by_id = dict(zip(projects["id"].astype(str), tags["tag"].astype(str), strict=True))
    ids = dataset["id"].astype(str)
    missing = sorted(set(ids) - set(fine_by_id))
    if missing:
        raise ValueError(f"dataset.csv ids missing from projects.csv: {missing[:5]}")
    frame = dataset.assign(fine_tag=[fine_by_id[i] for i in ids])
    wrong = frame[
        (frame["fine_tag"] != frame["tag"]) & ((frame["tag"] != OTHER) | frame["fine_tag"].isin(LABELS))
    ]
    if not wrong.empty:
        first = wrong.iloc[0]
        raise ValueError(
            f"{len(wrong)} finer tag(s) do not collapse to dataset.csv's tag: id {first['id']} is "
            f"{first['tag']!r} in dataset.csv and {first['fine_tag']!r} in tags.csv"
        )
    return frame


def other_topics(frame: pd.DataFrame) -> list[str]:
    """The finer topics that make up `other`, largest first."""
    counts = Counter(frame.loc[frame["tag"] == OTHER, "fine_tag"])
    return [topic for topic, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def load_data(data_dir: Path) -> tuple[Any, pd.DataFrame]:
    """The verified, validated dataset.csv with tags.csv's finer tags, read as the other benchmarks read
    the data (``quality.load_real_data``)."""
    import pandas as pd

    data, dataset, _ = load_real_data(data_dir, extra=("projects.csv", "tags.csv"))
    # tags.csv is one column, which the product's reader of project files refuses as not a table.
    tags = pd.read_csv(data_dir / "tags.csv", dtype=str, keep_default_na=False)
    return data, with_fine_tags(dataset, read_csv(data_dir / "projects.csv"), tags)


def withhold(
    frame: pd.DataFrame, topic: str, *, seed: int, test_size: float = 0.2
) -> dict[str, pd.DataFrame]:
    """The rows a recipe trains on (``rest``), the withheld topic (``unseen``) and a stratified
    ``test_size`` of the other rows (``seen``), which the recipe does not train on either."""
    from sklearn.model_selection import train_test_split

    unseen = frame[frame["fine_tag"] == topic].reset_index(drop=True)
    others = frame[frame["fine_tag"] != topic].reset_index(drop=True)
    rest, seen = train_test_split(others, test_size=test_size, stratify=others["tag"], random_state=seed)
    return {
        "rest": rest.reset_index(drop=True),
        "seen": seen.reset_index(drop=True),
        "unseen": unseen,
    }


# ------------------------------------------------------------------------------------------- scoring
def score(predictor: Predictor, seen: pd.DataFrame, unseen: pd.DataFrame) -> dict[str, Any]:
    """The figures of one model on one withheld topic (module docstring), as served."""
    answers = {
        name: [r["tag"] for r in predictor.predict(list(rows["title"]), list(rows["description"]))]
        for name, rows in (("seen", seen), ("unseen", unseen))
    }
    seen_scores = classification_scores(list(seen["tag"]), answers["seen"], LABELS)["overall"]
    both = classification_scores(
        list(seen["tag"]) + [OTHER] * len(unseen), answers["seen"] + answers["unseen"], LABELS
    )
    return {
        "unseen_rows": len(unseen),
        "unseen_other_share": answers["unseen"].count(OTHER) / len(unseen) if len(unseen) else None,
        "unseen_answers": dict(Counter(answers["unseen"]).most_common()),
        "seen_rows": len(seen),
        "seen_f1": seen_scores["f1"],
        "seen_macro_f1": seen_scores["macro_f1"],
        "both_f1": both["overall"]["f1"],
        "both_other_f1": both["per_class"][OTHER]["f1"],
        "threshold": predictor.threshold,
    }


def run_topic(
    frame: pd.DataFrame,
    topic: str,
    families: list[AnyModelParams],
    cfg: PipelineConfig,
    *,
    seed: int,
    workdir: Path,
    settings: Settings,
) -> dict[str, dict[str, Any]]:
    """Each family trained without ``topic`` (as a fold of crossval.py: the config's augmentation applies
    to the training and refit rows, never to validation) and scored on what was withheld."""
    parts = withhold(frame, topic, seed=seed)
    train, val = split_stage(parts["rest"], DataConfig(val_size=cfg.data.val_size, seed=seed))
    train_rows = augment_train(train, cfg.augmentation, seed=seed)
    refit_rows = augment_train(parts["rest"], cfg.augmentation, seed=seed)
    trained: dict[str, Any] = {}
    scores: dict[str, dict[str, Any]] = {}
    for params in sorted(families, key=lambda p: isinstance(p, EnsembleParams)):
        model = trained[params.family] = train_family(
            params,
            trained,
            train=train_rows,
            val=val,
            refit_rows=refit_rows,
            seed=seed,
            workdir=workdir / topic,
            settings=settings,
        )
        calibrate_model(model.val_model_dir, model.model_dir, val, cfg.calibration, cfg.evaluation)
        scores[params.family] = score(
            Predictor.from_directory(model.model_dir), parts["seen"], parts["unseen"]
        )
        s = scores[params.family]
        print(
            f"{topic:<24} {params.family:<11} unseen answered other {s['unseen_other_share']:.2f} "
            f"seen F1 {s['seen_f1']:.4f} both F1 {s['both_f1']:.4f}",
            flush=True,
        )
    shutil.rmtree(workdir / topic, ignore_errors=True)
    return scores


def summarize(family: str, by_topic: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """One family over the withheld topics: the mean of each figure, then each topic's."""
    runs = {topic: scores[family] for topic, scores in by_topic.items()}

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in runs.values())

    return {
        "family": family,
        "unseen_other_share": mean("unseen_other_share"),
        "seen_f1": mean("seen_f1"),
        "both_f1": mean("both_f1"),
        "both_other_f1": mean("both_other_f1"),
        "topics": runs,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    """Per family: the share of each withheld topic answered `other`, their mean, seen and both F1."""
    topics = list(results[0]["topics"]) if results else []
    header = (
        f"{'family':<11} "
        + " ".join(f"{topic[:14]:>14}" for topic in topics)
        + f" {'mean':>6} {'seen F1':>8} {'both F1':>8} {'other F1':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['family']:<11} "
            + " ".join(f"{r['topics'][t]['unseen_other_share']:>14.2f}" for t in topics)
            + f" {r['unseen_other_share']:>6.2f} {r['seen_f1']:>8.4f} {r['both_f1']:>8.4f}"
            f" {r['both_other_f1']:>8.4f}"
        )


# ------------------------------------------------------------------------------------------- command
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--engine", choices=["local", "ray"], default="local", help="transformer training")
    parser.add_argument("--config", type=Path, default=PIPELINE_CONFIG, help="pipeline config YAML")
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = pipeline_recipe(args.engine, args.config)
    output = args.output or results_path("unseen_topics", args.config)
    by_family = {p.family: p for p in cfg.models}
    wanted = [f for f in FAMILIES if f in args.families]
    missing = [f for f in wanted if f not in by_family]
    if missing:
        raise SystemExit(f"{args.config}: no model of the families {missing} in 'models'")
    workdir = Path(tempfile.mkdtemp(prefix="tagops-unseen-"))
    load_before = os.getloadavg()
    try:
        data, frame = load_data(workdir / "data")
        topics = other_topics(frame)
        by_topic = {
            topic: run_topic(
                frame,
                topic,
                [by_family[f] for f in wanted],
                cfg,
                seed=args.seed + index,
                workdir=workdir,
                settings=Settings(home=workdir / "home"),
            )
            for index, topic in enumerate(topics)
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = [summarize(family, by_topic) for family in wanted]
    print(
        f"\n`other`'s finer topics withheld one at a time from dataset.csv (n={len(frame)}), seed "
        f"{args.seed}; {os.cpu_count()} CPUs, load average {load_before[0]:.1f} before / "
        f"{os.getloadavg()[0]:.1f} after. Share of the withheld topic answered `other`:"
    )
    print_table(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "benchmark": "unseen_topics",
                "seed": args.seed,
                "dataset_rows": len(frame),
                "dataset_sha256": data.dataset_sha256,
                "topics": dict(Counter(frame.loc[frame["tag"] == OTHER, "fine_tag"]).most_common()),
                "val_size": cfg.data.val_size,
                "calibration": cfg.calibration.model_dump(mode="json"),
                "augmentation": cfg.augmentation.model_dump(mode="json"),
                "transformer_engine": args.engine,
                "config": config_name(args.config),
                "models": {f: by_family[f].model_dump(mode="json") for f in wanted},
                "results": results,
                "load_average_before_after": [load_before[0], os.getloadavg()[0]],
                **stamp(),
            },
            indent=2,
        )
    )
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
