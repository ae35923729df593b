"""A tiny random BERT encoder written to a folder, so transformer tests need no real weights.

Hidden size 32, two layers and a WordPiece vocabulary of a few hundred words: building it takes well under
a second, and a model trained on it behaves like the real one (same code path, same files).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LINES = (
    "a an and the of for to in on with by from is are this that it its as at be we our your using use used",
    "open source toolkit release project model models learning machine deep neural network networks data",
    "image images segmentation camera pixel detection video yolo photo vision object objects face cnn cnns",
    "deployment docker kubernetes monitoring serving production pipeline pipelines ci mlops experiment",
    "tracking feature store registry drift",
    "text sentence language tokenizer translation sentiment chatbot summarization nlp",
    "transformer transformers",
    "bert word words question answering intent speech",
    "reinforcement graph tabular forecasting recommender agent reward gnn time series bayesian optimization",
    "library framework tutorial course paper code python api fast simple new based state art survey",
)
WORDS = [word for line in LINES for word in line.split()]


def fixture_words(*csv_files: Path) -> list[str]:
    """Every lower-case word of the given CSV files (to give the tiny vocabulary the fixtures' words)."""
    words: dict[str, None] = {}
    for path in csv_files:
        words.update(dict.fromkeys(re.findall(r"[a-z0-9]+", path.read_text(encoding="utf-8").lower())))
    return list(words)


def write_tiny_encoder(
    folder: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0, extra_words: Iterable[str] = ()
) -> Path:
    """Write a random BERT (config, safetensors weights) and its tokenizer to ``folder``; returns it."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = [*SPECIAL, *dict.fromkeys([*WORDS, *extra_words])]
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab += list("abcdefghijklmnopqrstuvwxyz0123456789")
    ids = {token: i for i, token in enumerate(dict.fromkeys(vocab))}
    tokenizer = BertTokenizer(vocab=ids, do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(ids),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(folder))
    return folder
