"""The state of a sampling run between rounds: what a checkpoint holds and a resume restores."""

from dataclasses import dataclass, field
from typing import Any

from neuronshapley.estimators.walks import Endpoints, RangeStats
from neuronshapley.results.stats import RunningStats
from neuronshapley.results.tails import TailBounds


@dataclass
class RunState:
    """Where a run stands: merged statistics, counters, the endpoint values.

    Attributes:
        stats: The marginals of every complete round, merged in permutation order.
        next_permutation: Index of the first permutation not yet walked.
        n_evaluations: Coalitions evaluated by the run (over resumed parts).
        endpoints: V(N) and V(empty), once evaluated.
        n_walks_truncated: Walks that ended early on a dead network.
        removed_fraction_sum: Sum over those walks of the fraction of players removed.
        extra: The planner's diagnostics (e.g. TMAB's undecided players), JSON types.
        tails: With plain truncation, the bounds on what the truncated tails hide.
        n_walks_continued: Walks that went on past their truncation point.
    """

    stats: RunningStats
    next_permutation: int = 0
    n_evaluations: int = 0
    endpoints: Endpoints | None = None
    n_walks_truncated: int = 0
    removed_fraction_sum: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    tails: TailBounds | None = None
    n_walks_continued: int = 0

    @classmethod
    def fresh(cls, n_players: int) -> "RunState":
        return cls(RunningStats.zeros(n_players, ordered=True))

    def absorb(self, outcome: RangeStats) -> "RunState":
        """This state with ``outcome`` merged in; past it only if the range was complete.

        Ranges are merged in order, each exactly once: the next one must start where this
        state stops (a range merged twice, or skipped, would bias the values silently).
        """
        if outcome.work.first != self.next_permutation:
            raise ValueError(
                f"Ranges merge in order: this state continues at permutation "
                f"{self.next_permutation}, but the range starts at {outcome.work.first}."
            )
        complete = outcome.complete
        # The first guess of a player's sample in the anytime bound's variance process: the
        # mean of all values, (V(N) - V(empty)) / n (efficiency), which lies in their range.
        ends = self.endpoints
        if ends is None:
            raise ValueError("A run evaluates V(N) and V(empty) before it merges any range.")
        first_guess = (ends.v_full - ends.v_empty) / self.stats.n_players
        tails = self.tails
        if outcome.tails is not None:  # plain truncation: the bounds on what the tails hide
            if tails is None:
                tails = TailBounds.zeros(
                    self.stats.n_players, outcome.tails.dead_band, ordered=True
                )
            tails = tails.merge(outcome.tails, first_guess=first_guess)
        return RunState(
            stats=self.stats.merge(outcome.stats, first_guess=first_guess),
            next_permutation=(
                outcome.work.first + outcome.work.count if complete else self.next_permutation
            ),
            n_evaluations=self.n_evaluations + outcome.n_evaluations,
            endpoints=self.endpoints,
            n_walks_truncated=self.n_walks_truncated + outcome.n_walks_truncated,
            removed_fraction_sum=self.removed_fraction_sum + outcome.removed_fraction_sum,
            extra=dict(self.extra),
            tails=tails,
            n_walks_continued=self.n_walks_continued + outcome.n_walks_continued,
        )
