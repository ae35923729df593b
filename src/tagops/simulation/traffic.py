"""The simulated stream: windows drawn from the data with a topic mix, and the shifted vocabulary."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


logger = logging.getLogger(__name__)


_WORD = re.compile(r"[A-Za-z]+")


# ------------------------------------------------------------------------------------------ traffic
def rewrite_vocabulary(text: str) -> str:
    """Every word spelled backwards: the same projects in a vocabulary no model trained here has seen."""
    return _WORD.sub(lambda match: match.group(0)[::-1], text)


def shifted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with titles and descriptions rewritten by :func:`rewrite_vocabulary` (labels kept)."""
    shifted = frame.copy()
    shifted["title"] = [rewrite_vocabulary(str(t)) for t in shifted["title"]]
    shifted["description"] = [rewrite_vocabulary(str(d)) for d in shifted["description"]]
    return shifted


def draw_mix(
    pool: pd.DataFrame, mix: dict[str, float], rows: int, rng: np.random.Generator, used: set[int]
) -> pd.DataFrame:
    """``rows`` rows of ``pool`` in the tag shares of ``mix``, without replacement across calls (``used``).

    A tag whose unused rows run out is topped up with replacement (those repeats are duplicates that
    retraining drops).
    """
    import pandas as pd

    total = sum(mix.values())
    picks: list[int] = []
    for tag, share in sorted(mix.items()):
        want = round(rows * share / total)
        candidates = [i for i in np.flatnonzero((pool["tag"] == tag).to_numpy()) if i not in used]
        fresh = list(rng.permutation(candidates)[:want]) if candidates else []
        if len(fresh) < want:
            everything = np.flatnonzero((pool["tag"] == tag).to_numpy())
            if len(everything):
                fresh += list(rng.choice(everything, size=want - len(fresh), replace=True))
        used.update(int(i) for i in fresh)
        picks.extend(int(i) for i in fresh)
    order = rng.permutation(len(picks))
    return pd.DataFrame(pool.iloc[[picks[i] for i in order]]).reset_index(drop=True)
