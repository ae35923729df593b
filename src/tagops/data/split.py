"""Seeded, stratified train/validation split."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def stratify_split(
    frame: pd.DataFrame, *, val_size: float, seed: int, label_column: str = "tag"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` keeping each label's share in both parts; the same seed gives the same split.

    Raises:
        ValueError: if a label has fewer than two rows (it cannot appear on both sides).

    """
    from sklearn.model_selection import train_test_split

    counts = frame[label_column].value_counts()
    rare = counts[counts < 2]
    if not rare.empty:
        raise ValueError(f"cannot stratify: labels with fewer than 2 rows: {rare.to_dict()}")
    train, val = train_test_split(
        frame, test_size=val_size, random_state=seed, stratify=frame[label_column], shuffle=True
    )
    return train.reset_index(drop=True), val.reset_index(drop=True)
