"""The transformer family on a tiny random BERT: fit in process, overfit one batch, safe save/load."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tagops import LABELS
from tagops.config import TrainConfig, TransformerParams
from tagops.data.clean import build_text
from tagops.errors import TagopsError
from tagops.models import TagModel, create_model, load_model, read_model_info
from tagops.models.transformer import TransformerModel
from tagops.models.transformer.network import TextEncoder, load_tokenizer, resolve_encoder

from .conftest import make_projects

pytestmark = pytest.mark.unit


def tiny_params(encoder_dir: Path, **overrides: object) -> TransformerParams:
    values: dict[str, object] = {
        "encoder": str(encoder_dir),
        "engine": "local",
        "max_length": 32,
        "batch_size": 8,
        "epochs": 12,
        "lr": 3e-3,
        "head_lr": 1e-2,
        "dropout": 0.0,
        "warmup_ratio": 0.0,
        "patience": 4,
        "freeze_embeddings": False,  # a random tiny vocabulary must learn its embeddings
    }
    values.update(overrides)
    return TransformerParams.model_validate(values)


def training_data(per_label: int = 6, offset: int = 0) -> tuple[list[str], list[str]]:
    frame = make_projects(per_label, offset=offset)
    texts = [build_text(t, d) for t, d in zip(frame.title, frame.description, strict=True)]
    return texts, frame.tag.tolist()


@pytest.fixture(scope="module")
def fitted(encoder_dir: Path) -> TransformerModel:
    texts, labels = training_data()
    val_texts, val_labels = training_data(2, offset=7)
    return TransformerModel(tiny_params(encoder_dir, epochs=8)).fit(
        texts, labels, seed=7, val_texts=val_texts, val_labels=val_labels
    )


def test_family_is_created_from_config_and_meets_the_protocol(encoder_dir: Path) -> None:
    params = TrainConfig.model_validate({"model": {"family": "transformer"}}).model
    assert isinstance(params, TransformerParams)
    assert params.encoder is None  # the bundled MiniLM
    model = create_model(tiny_params(encoder_dir))
    assert isinstance(model, TransformerModel)
    assert isinstance(model, TagModel)


def test_every_family_is_found_by_name_and_base_imports_none(tmp_path: Path) -> None:
    import ast
    import typing

    import tagops.models.base as base
    from tagops.config import AnyModelParams

    families = {cls.model_fields["family"].default for cls in typing.get_args(AnyModelParams)}
    assert set(base.FAMILIES) == families
    assert all(base.family_class(family).family == family for family in families)
    tree = ast.parse(Path(base.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {f"tagops.models.{family}" for family in families} & imported  # no cycle with the families
    (tmp_path / "model.json").write_text(json.dumps({"family": "forest", "labels": list(LABELS)}))
    with pytest.raises(ValueError, match="unknown model family 'forest'"):
        load_model(tmp_path)


def test_bundled_encoder_resolves_to_the_installed_minilm() -> None:
    folder = Path(resolve_encoder(None))
    assert (folder / "config.json").is_file()
    assert json.loads((folder / "config.json").read_text())["hidden_size"] == 384


def test_an_encoder_folder_resolves_to_itself(encoder_dir: Path) -> None:
    assert resolve_encoder(str(encoder_dir)) == str(encoder_dir)


def copy_without(source: Path, target: Path, *names: str) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*names))
    return target


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such folder"),
        ("a file", "no such folder"),
        ("no config", "the folder holds no config.json, so it is not a model folder"),
        ("no weights", "the folder holds no weights (model.safetensors or pytorch_model.bin)"),
        ("no tokenizer", "cannot load its tokenizer"),
    ],
)
def test_an_encoder_folder_that_cannot_load_is_named(
    encoder_dir: Path, tmp_path: Path, case: str, message: str
) -> None:
    folder = {
        "missing": lambda: tmp_path / "nowhere",
        "a file": lambda: encoder_dir / "config.json",
        "no config": lambda: copy_without(encoder_dir, tmp_path / "enc", "config.json"),
        "no weights": lambda: copy_without(encoder_dir, tmp_path / "enc", "*.safetensors", "*.bin"),
        "no tokenizer": lambda: copy_without(encoder_dir, tmp_path / "enc", "tokenizer*", "vocab.txt"),
    }[case]()
    with pytest.raises(TagopsError) as info:
        resolve_encoder(str(folder))
    assert str(info.value).startswith(f"encoder {str(folder)!r}: {message}")


def test_a_hub_id_not_found_offline_says_how_to_reach_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants
    import transformers

    def not_cached(name: str, **_: object) -> None:
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files of {name}")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", not_cached)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1 at import
    offline = r"local cache with the hub off \(HF_HUB_OFFLINE=1\).*set HF_HUB_OFFLINE=0"
    with pytest.raises(TagopsError, match=offline):
        resolve_encoder("sentence-transformers/all-MiniLM-L12-v2")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(TagopsError, match="cannot load it: We couldn't connect"):
        resolve_encoder("sentence-transformers/all-MiniLM-L12-v2")


def test_batch_must_split_across_workers() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TransformerParams(batch_size=2, num_workers=4)


def test_overfits_one_batch(encoder_dir: Path) -> None:
    texts, labels = training_data(2)  # one batch of 8 rows
    params = tiny_params(encoder_dir, epochs=30, patience=None, lr=1e-2, head_lr=3e-2)
    model = TransformerModel(params).fit(texts, labels, seed=1)
    losses = [epoch["train_loss"] for epoch in model.training_["history"]]
    assert losses[-1] < 0.1 * losses[0]
    predicted = [LABELS[i] for i in model.predict_proba(texts).argmax(axis=1)]
    assert predicted == labels


def test_learns_the_written_other_rows_on_either_engine_when_asked(
    encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tagops.data.augment as augment
    import tagops.runtime
    from tagops.models.transformer.ray_train import fit_transformer
    from tagops.settings import Settings

    written = augment.other_topics_texts()
    texts, labels = training_data(1)
    expected = ([*texts, *written], [*labels, *(["other"] * len(written))])
    trained_on: list[tuple[list[str], list[str]]] = []
    given = augment.with_other_topics_texts

    def spy(texts: list[str], labels: list[str]) -> tuple[list[str], list[str]]:
        trained_on.append(given(texts, labels))
        return trained_on[-1]

    monkeypatch.setattr(augment, "with_other_topics_texts", spy)
    params = tiny_params(encoder_dir, epochs=1, patience=None, other_topics=True)
    TransformerModel(params.model_copy(update={"other_topics": False})).fit(texts, labels, seed=1)
    assert trained_on == []
    model = TransformerModel(params).fit(texts, labels, seed=1)
    assert trained_on == [expected] and len(model.training_["history"]) == 1

    # Ray Train adds them before it starts the cluster; a row given already is not added twice
    def no_cluster(settings: Settings) -> None:
        raise RuntimeError("no cluster needed past this point")

    monkeypatch.setattr(tagops.runtime, "ray_session", no_cluster)
    with pytest.raises(RuntimeError, match="no cluster"):
        fit_transformer(
            [*texts, written[0]],
            [*labels, "other"],
            params=params.model_copy(update={"engine": "ray"}),
            seed=1,
            settings=Settings(home=tmp_path),
            storage_dir=tmp_path,
            name="run",
        )
    assert trained_on[1:] == [([*texts, written[0], *written[1:]], expected[1])]


def test_learns_the_synthetic_classes_and_keeps_the_best_epoch(fitted: TransformerModel) -> None:
    texts, labels = training_data(3, offset=20)
    predicted = [LABELS[i] for i in fitted.predict_proba(texts).argmax(axis=1)]
    assert np.mean([p == t for p, t in zip(predicted, labels, strict=True)]) >= 0.75
    training = fitted.training_
    assert training["best_f1"] == max(e["val_f1"] for e in training["history"])
    assert training["history"][training["best_epoch"] - 1]["val_f1"] == training["best_f1"]


def test_predict_proba_is_a_distribution_in_input_order(fitted: TransformerModel) -> None:
    texts, _ = training_data(2)
    texts = [*texts, "a much longer text " * 30, ""]
    proba = fitted.predict_proba(texts)
    assert proba.shape == (len(texts), len(LABELS))
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    one_by_one = np.vstack([fitted.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(proba, one_by_one, atol=1e-5)
    assert fitted.predict_proba([]).shape == (0, len(LABELS))


def test_texts_are_truncated_to_max_length(encoder_dir: Path) -> None:
    encoder = TextEncoder(load_tokenizer(str(encoder_dir)), tiny_params(encoder_dir, max_length=16))
    arrays = encoder.encode(["image " * 100, "text", "see https://github.com/foo/bar now"])
    assert arrays["input_ids"].shape == (3, 16)
    assert arrays["attention_mask"][0].sum() == 16
    assert arrays["attention_mask"][1].sum() == 3  # [CLS] text [SEP]
    assert encoder.clean(["see https://github.com/foo/bar now"]) == ["see now"]


def test_save_load_round_trip_is_identical_and_pickle_free(
    fitted: TransformerModel, encoder_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    fitted.save(out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "model.json" in files
    assert "weights.safetensors" in files
    assert "encoder/config.json" in files
    assert any(f.startswith("tokenizer/") for f in files)
    assert not [f for f in files if f.endswith((".bin", ".pkl", ".pickle", ".pt", ".pth", ".joblib"))]
    info = read_model_info(out)
    assert info["family"] == "transformer"
    assert info["labels"] == list(LABELS)
    assert info["training"]["best_epoch"] >= 1
    texts, _ = training_data(2, offset=3)
    loaded = load_model(out)
    assert isinstance(loaded, TransformerModel)
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted.predict_proba(texts))


def test_loading_needs_neither_the_original_encoder_nor_torch_load(
    encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    copy = shutil.copytree(encoder_dir, tmp_path / "encoder-copy")
    texts, labels = training_data(2)
    model = TransformerModel(tiny_params(copy, epochs=1)).fit(texts, labels, seed=3)
    model.save(tmp_path / "model")
    expected = model.predict_proba(texts)
    shutil.rmtree(copy)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("loading a saved model must not unpickle (torch.load)")

    monkeypatch.setattr(torch, "load", refuse)
    np.testing.assert_array_equal(load_model(tmp_path / "model").predict_proba(texts), expected)


def test_frozen_encoder_only_trains_the_head(encoder_dir: Path) -> None:
    texts, labels = training_data(2)
    params = tiny_params(encoder_dir, freeze_encoder=True, epochs=2)
    model = TransformerModel(params).fit(texts, labels, seed=5)
    original = load_model_weights(encoder_dir)
    trained = {k.removeprefix("encoder."): v for k, v in model.module_.state_dict().items()}
    name = "embeddings.word_embeddings.weight"
    np.testing.assert_array_equal(trained[name].numpy(), original[name])
    assert not all(p.requires_grad for p in model.module_.parameters())
    assert all(p.requires_grad for p in model.module_.head.parameters())


def test_top_layers_alone_are_fine_tuned(encoder_dir: Path) -> None:
    texts, labels = training_data(2)
    params = tiny_params(encoder_dir, trainable_layers=1, freeze_embeddings=True, epochs=2, lr=1e-2)
    model = TransformerModel(params).fit(texts, labels, seed=5)
    original = load_model_weights(encoder_dir)
    trained = {k.removeprefix("encoder."): v.numpy() for k, v in model.module_.state_dict().items()}
    below = [k for k in original if k.startswith(("embeddings.", "encoder.layer.0."))]
    top = [k for k in original if k.startswith("encoder.layer.1.")]
    assert below and top
    for name in below:  # the embeddings (positions and norm too) and the lower layer: as pre-trained
        np.testing.assert_array_equal(trained[name], original[name], err_msg=name)
    assert any(not np.array_equal(trained[name], original[name]) for name in top)
    assert all(p.requires_grad for p in model.module_.head.parameters())


def test_trainable_layers_are_found_by_shape_in_other_encoders() -> None:
    from transformers import DistilBertConfig, DistilBertModel

    from tagops.models.transformer.network import build_classifier

    encoder = DistilBertModel(DistilBertConfig(vocab_size=60, dim=16, hidden_dim=32, n_layers=3, n_heads=2))
    module = build_classifier(encoder, TransformerParams(trainable_layers=2), num_labels=4)
    trained = {n for n, p in module.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("encoder.embeddings.", "encoder.transformer.layer.0.")) for n in trained)
    assert any(n.startswith("encoder.transformer.layer.1.") for n in trained)
    assert any(n.startswith("encoder.transformer.layer.2.") for n in trained)


def test_more_trainable_layers_than_the_encoder_has_are_refused(encoder_dir: Path) -> None:
    texts, labels = training_data(2)
    with pytest.raises(ValueError, match="trainable_layers is 3, but the encoder has 2 layers"):
        TransformerModel(tiny_params(encoder_dir, trainable_layers=3, freeze_embeddings=True)).fit(
            texts, labels, seed=5
        )


def test_an_encoder_without_a_layer_stack_cannot_be_partly_fine_tuned() -> None:
    from types import SimpleNamespace

    from torch import nn

    from tagops.models.transformer.network import freeze_below_top_layers

    encoder = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    encoder.config = SimpleNamespace(num_hidden_layers=2)  # type: ignore[assignment]
    with pytest.raises(ValueError, match="no list of 2 layers"):
        freeze_below_top_layers(encoder, 1)


def test_trainable_layers_with_freezing_that_contradicts_it_are_refused() -> None:
    with pytest.raises(ValueError, match=r"trainable_layers \(2\).*freeze_encoder"):
        TransformerParams(freeze_encoder=True, trainable_layers=2)
    with pytest.raises(ValueError, match=r"trainable_layers \(1\).*freeze_embeddings: false"):
        TransformerParams(freeze_embeddings=False, trainable_layers=1)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        TransformerParams(trainable_layers=0)


def load_model_weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}


def test_same_seed_same_model(encoder_dir: Path) -> None:
    texts, labels = training_data(2)
    params = tiny_params(encoder_dir, epochs=2, dropout=0.1)
    first = TransformerModel(params).fit(texts, labels, seed=11).predict_proba(texts)
    second = TransformerModel(params).fit(texts, labels, seed=11).predict_proba(texts)
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_each_epoch_logs_one_line_with_validation_f1(
    encoder_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts, labels = training_data(2)
    val_texts, val_labels = training_data(1, offset=7)
    with caplog.at_level(logging.INFO, logger="tagops.models.transformer"):
        model = TransformerModel(tiny_params(encoder_dir, epochs=2, patience=None)).fit(
            texts, labels, seed=2, val_texts=val_texts, val_labels=val_labels
        )
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    f1 = [entry["val_f1"] for entry in model.training_["history"]]
    assert [line.split(" (")[0] for line in lines] == [
        f"epoch {epoch}/2: train loss {entry['train_loss']:.3f}, validation F1 {f1[epoch - 1]:.3f}"
        for epoch, entry in enumerate(model.training_["history"], start=1)
    ]


def test_unknown_labels_are_refused(encoder_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown labels"):
        TransformerModel(tiny_params(encoder_dir)).fit(["a text"], ["vision"])


def eager_proba(model: TransformerModel, texts: list[str]) -> np.ndarray:
    """The reference: the eager network, one batch on the calling thread."""
    import torch

    from tagops.models.transformer.network import array_batches, predict_logits

    arrays = TextEncoder(model.tokenizer_, model.params).encode(texts)
    logits = predict_logits(model.module_, array_batches(arrays, 64), torch.device("cpu")).astype(np.float64)
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(proba / proba.sum(axis=1, keepdims=True))


@pytest.mark.parametrize(("rows", "workers"), [(4, 2), (16, 2), (32, 2), (64, 2), (500, 2), (9, 4), (64, 3)])
def test_chunks_cover_the_batch_with_equal_work_longest_first(rows: int, workers: int) -> None:
    from tagops.models.transformer.inference import CHUNKS_PER_WORKER, chunk_bounds

    rng = np.random.default_rng(rows)
    lengths = np.sort(rng.integers(3, 200, size=rows))  # token counts, ascending as inference sorts them
    bounds = chunk_bounds(lengths, workers)
    assert sorted(bounds) == bounds[::-1]  # the longest texts come first
    covered = [row for start, stop in sorted(bounds) for row in range(start, stop)]
    assert covered == list(range(rows))  # every row once, contiguous in length order
    assert len(bounds) >= min(rows // 2, CHUNKS_PER_WORKER * workers)
    work = [int(lengths[a:b].sum()) for a, b in bounds]
    assert max(work) - min(work) <= 2 * lengths.max()  # equal work, up to a text or two


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_inference_matches_the_eager_network_on_any_split(fitted: TransformerModel, threads: int) -> None:
    import threading

    import tagops.models.transformer.inference as transformer

    texts, _ = training_data(3)
    texts = [*texts, "a much longer text " * 30, "", "x"]  # 15 texts of very different lengths
    model = TransformerModel(fitted.params).adopt(fitted.module_, fitted.tokenizer_, fitted.training_)
    model.num_threads = threads
    seen: set[str] = set()
    calls: list[int] = []
    logits = transformer._logits

    def recording(network: object, batch: dict[str, np.ndarray]) -> np.ndarray:
        seen.add(threading.current_thread().name)
        calls.append(len(batch["input_ids"]))
        return logits(network, batch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transformer, "_logits", recording)
        model.predict_proba(texts[:1])  # traces and checks the trace on this thread
        seen.clear()
        calls.clear()
        np.testing.assert_allclose(model.predict_proba(texts), eager_proba(model, texts), atol=1e-5)
        assert model._inference is not None and model._inference.traced  # the tiny BERT traces faithfully
        if threads > 1:  # a big batch is cut for the workers, a small one runs on the one team thread
            # Which worker takes which chunk is up to the pool (an idle one may take two): what is fixed is
            # that the batch is cut into a chunk per worker or more and only the pool's workers run them.
            assert sum(calls) == len(texts) and len(calls) >= threads
            assert seen <= {f"tagops-torch_{i}" for i in range(threads)}
            assert model._inference._pool._max_workers == threads
            seen.clear()
            model.predict_proba(texts[:1])
            assert seen == {"tagops-torch-team_0"}
        else:
            assert seen == {threading.current_thread().name}


@pytest.mark.parametrize("failure", ["differs", "raises"])
def test_a_trace_that_is_not_faithful_is_not_used(
    fitted: TransformerModel, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def bad_trace(module: object, example: tuple[object, ...], **_: object) -> object:
        if failure == "raises":
            raise RuntimeError("cannot trace this encoder")
        return lambda ids, mask: module(ids, mask) + 1e-3  # type: ignore[operator]

    monkeypatch.setattr(torch.jit, "trace", bad_trace)
    model = TransformerModel(fitted.params).adopt(fitted.module_, fitted.tokenizer_, fitted.training_)
    model.num_threads = 2
    texts, _ = training_data(2)
    np.testing.assert_allclose(model.predict_proba(texts), eager_proba(model, texts), atol=1e-6)
    assert model._inference is not None and not model._inference.traced


def test_inference_never_uses_dropout_even_after_training_mode(fitted: TransformerModel) -> None:
    model = TransformerModel(fitted.params).adopt(fitted.module_, fitted.tokenizer_, fitted.training_)
    model.num_threads = 2
    model.module_.train()  # the encoder's own dropout (0.1 in the tiny BERT) would make answers random
    texts, _ = training_data(2, offset=9)
    first = model.predict_proba(texts)
    np.testing.assert_allclose(first, eager_proba(model, texts), atol=1e-5)
    model.module_.train()
    np.testing.assert_allclose(model.predict_proba(texts), first, atol=1e-6)


def _os_threads() -> int:
    return len(list(Path("/proc/self/task").iterdir()))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_multi_threaded_inference_forms_one_openmp_team_whoever_calls() -> None:
    """libgomp gives each thread running a parallel operator a team that lives as long as the thread;
    more teamed threads than CPUs make them sleep and wake at every operator (see ``_team_thread``)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from tagops.models.transformer.inference import on_team

    big = torch.ones(4_000_000)  # far over torch's grain size: the multiply runs on an OpenMP team

    def work() -> float:
        return float((big * 2).sum())

    assert on_team(2, work) == 8_000_000  # the team thread and its OpenMP worker exist from here
    before = _os_threads()
    barrier = threading.Barrier(3, timeout=60)

    def call(_: int) -> int:
        on_team(2, work)
        barrier.wait()  # all three callers are alive when the threads are counted
        count = _os_threads()
        barrier.wait()
        return count

    with ThreadPoolExecutor(3) as callers:
        counts = list(callers.map(call, range(3)))
    assert max(counts) == before + 3  # the callers themselves; no team of their own


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_loading_runs_torch_single_threaded_and_restores_the_thread_count() -> None:
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from tagops.models.transformer.inference import single_threaded_torch

    big = torch.ones(4_000_000)

    def load_like() -> tuple[int, int, int]:
        torch.set_num_threads(2)
        before = _os_threads()
        with single_threaded_torch():
            (big * 2).sum()
            during = _os_threads()
        return before, during, torch.get_num_threads()

    with ThreadPoolExecutor(1) as loader:
        before, during, after = loader.submit(load_like).result()
    assert during == before and after == 2


# ------------------------------------------------------------------------------------ the trace cache
def test_fast_tokenizer_gives_transformers_arrays(encoder_dir: Path, tmp_path: Path) -> None:
    from tagops.models.transformer.network import FastTokenizer

    saved = tmp_path / "tokenizer"
    load_tokenizer(str(encoder_dir)).save_pretrained(str(saved))
    texts = [
        "",
        "Object detection",
        "ÉCOLE naïve façade — über 東京 emoji 🚀 tabs\tand\nnewlines",
        " ".join(["a long text that is cut"] * 40),
        *training_data(2)[0],
    ]
    options = {"padding": "max_length", "truncation": True, "return_token_type_ids": False}
    for width in (8, 32, 64):
        expected = load_tokenizer(str(saved))(texts, max_length=width, return_tensors="np", **options)
        got = FastTokenizer(saved)(texts, max_length=width, **options)
        for key in ("input_ids", "attention_mask"):
            np.testing.assert_array_equal(got[key], expected[key].astype(np.int64))
    with pytest.raises(ValueError, match="max_length"):
        FastTokenizer(saved)(texts, padding="longest", truncation=True, max_length=8)


def test_a_served_transformer_reloads_from_its_cached_trace(
    fitted: TransformerModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import torch

    from tagops.models.trace_cache import traced_networks_in

    fitted.save(tmp_path / "model")
    texts, _ = training_data(2, offset=3)
    expected = fitted.predict_proba(texts)
    cache = tmp_path / "traced"
    with traced_networks_in(cache):
        first = load_model(tmp_path / "model")
        assert not list(cache.glob("*.pt"))  # traced on the first CPU prediction, then saved
        np.testing.assert_allclose(first.predict_proba(texts), expected, atol=1e-6)
    (trace,) = cache.glob("*.pt")
    assert trace.stat().st_mode & 0o077 == 0  # this user's only

    def no_transformers(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached trace loads without transformers' modelling code")

    monkeypatch.setitem(sys.modules, "transformers", None)  # importing it now fails
    monkeypatch.setattr(torch, "load", no_transformers)
    with traced_networks_in(cache):
        again = load_model(tmp_path / "model")
    assert isinstance(again, TransformerModel) and again.inference_only
    assert isinstance(again.module_, torch.jit.ScriptModule)
    np.testing.assert_allclose(again.predict_proba(texts), expected, atol=1e-6)
    assert len(list(cache.glob("*.pt"))) == 1
    with pytest.raises(RuntimeError, match="inference only"):
        again.save(tmp_path / "resaved")


def test_a_damaged_trace_is_ignored_and_other_weights_trace_anew(
    fitted: TransformerModel, encoder_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tagops.models.trace_cache import traced_networks_in

    fitted.save(tmp_path / "model")
    texts, labels = training_data(2, offset=3)
    cache = tmp_path / "traced"
    with traced_networks_in(cache):
        load_model(tmp_path / "model").predict_proba(texts)
        (trace,) = cache.glob("*.pt")
        trace.write_bytes(b"not a trace")
        with caplog.at_level(logging.WARNING):
            rebuilt = load_model(tmp_path / "model")
        assert "ignoring the cached trace" in caplog.text
        assert isinstance(rebuilt, TransformerModel) and not rebuilt.inference_only
        np.testing.assert_allclose(rebuilt.predict_proba(texts), fitted.predict_proba(texts), atol=1e-6)
        other = TransformerModel(tiny_params(encoder_dir, epochs=1)).fit(texts, labels, seed=5)
        other.save(tmp_path / "other")
        load_model(tmp_path / "other").predict_proba(texts)
    assert len(list(cache.glob("*.pt"))) == 2  # keyed by the weights: one per model
    assert not load_model(tmp_path / "model").inference_only  # no cache set: loaded as saved
