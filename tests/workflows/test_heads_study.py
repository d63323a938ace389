"""``neuronshapley study heads --model minilm``: the run made first, then the study's files.

The plumbing is tested on a tiny randomly initialised BERT with a tokenizer of a few words and
toy benchmarks standing in for all-MiniLM-L6-v2 and its benchmarks (the real encoder costs about
a second per evaluation; tests/zoo/test_minilm.py checks it on a few MEN words).
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuronshapley.cli import main
from neuronshapley.workflows.studies import study_run_config
from neuronshapley.zoo import minilm
from neuronshapley.zoo.wordsim import WordPairs

transformers = pytest.importorskip(
    "transformers",
    reason="transformers is not installed: pip install 'neuronshapley[transformers]'",
)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"word{letter}" for letter in "abcdefghijklmnopqrst"]  # 20 words, one token each
REFERENCE = [f"ref{letter}" for letter in "abcdefgh"]


def toy_pairs(name: str, words: list[str], n_pairs: int, seed: int) -> WordPairs:
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(len(words), 2, replace=False) for _ in range(n_pairs)]
    ratings = rng.uniform(0, 10, n_pairs)
    ratings.flags.writeable = False
    return WordPairs(
        name, tuple(words[a] for a, _ in chosen), tuple(words[b] for _, b in chosen), ratings
    )


@pytest.fixture
def tiny_minilm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """zoo.load("minilm") gives a tiny BERT (2 layers of 6 heads) and toy benchmarks."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS + REFERENCE) + "\n")
    tokenizer = transformers.BertTokenizer(vocab_file=str(vocab))
    benchmarks = {
        "MEN": toy_pairs("MEN", WORDS[:12], 30, seed=0),
        "RG-65": toy_pairs("RG-65", WORDS[8:], 20, seed=1),
    }
    words = minilm.WordSimilarity(tokenizer, benchmarks, tuple(REFERENCE))
    config = transformers.BertConfig(
        hidden_size=12, num_hidden_layers=2, num_attention_heads=6, intermediate_size=24,
        vocab_size=len(SPECIAL + WORDS + REFERENCE), max_position_embeddings=8,
    )  # fmt: skip

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return transformers.BertModel(config)

    monkeypatch.setattr(minilm, "word_similarity", lambda: words)
    monkeypatch.setattr(minilm, "_pretrained_model", model)


def test_heads_study_makes_the_run_and_writes_its_section(
    tiny_minilm: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["study", "heads", "--model", "minilm", "--run", str(run), "--budget", "60"]
    code = main([*argv, "--k", "2", "--random", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["units"] == minilm.UNITS
    assert record["config"]["ablation"] == "token_mean"
    assert record["config"]["truncation"] is None
    assert record["n_units"] == 12
    folder = run / "studies" / "heads"
    study = json.loads((folder / "study.json").read_text())
    headline = study["headline"]
    assert headline["valuing"] == "MEN" and headline["k"] == 2
    assert headline["n_evaluations"] == record["n_evaluations"] <= 60
    # Walks are tasks: a budget inside a round keeps the walks it finished (11 evaluations each).
    values = json.loads((run / "result.json").read_text())
    assert values["diagnostics"]["n_permutations"] == (60 - 2) // 11
    assert set(headline["scores"]) == {"MEN", "RG-65"}
    assert len(headline["top"]) == len(headline["most_negative"]) == 2
    assert len(headline["heads"]) == 12
    assert headline["curves"]["counts"] == [0, 1, 2, 3, 5, 10, 12]
    assert headline["curves"]["lowest first"][-1] == pytest.approx(headline["empty"])
    assert set(headline["rank_correlation"]) == {"entropy", "content share"}
    with open(folder / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["benchmark"], row["role"]) for row in rows] == [
        ("MEN", "valuing"), ("RG-65", "held out"),
    ]  # fmt: skip
    assert float(rows[0]["none"]) == pytest.approx(headline["full"])
    for figure in ("head_values", "head_removal", "head_attention"):
        assert (folder / f"{figure}.png").stat().st_size > 1000
    assert "Attention heads of a pretrained encoder" in (run / "report.html").read_text()
    assert "Held out (never used for the values): RG-65:" in out
    assert f"V(N) = {headline['full']:.3f}" in out


@pytest.mark.parametrize(
    ("given", "units", "ablation", "memory", "n_units"),
    [
        ([], minilm.UNITS, "token_mean", 1 << 30, 12),  # the heads, as the study values them
        (["--units", "mlp:encoder.layer.*"], "mlp:encoder.layer.*", "token_mean", 1 << 30, 48),
        (["--ablation", "zero", "--memory-budget", "256"], minilm.UNITS, "zero", 256 << 20, 12),
    ],
)
def test_run_of_the_pretrained_encoder_defaults_to_its_heads(
    tiny_minilm: None,
    tmp_path: Path,
    given: list[str],
    units: str,
    ablation: str,
    memory: int,
    n_units: int,
) -> None:
    """``run --model minilm`` without --units values the heads with token means (the words
    and the reference words have other token counts: per-position means do not fit), in
    passes of 1 GiB (3x faster than the 64 MiB CPU default on the real encoder)."""
    run = tmp_path / "run"
    argv = ["run", "--model", "minilm", "--out", str(run), "--budget", "2", "--no-progress"]
    assert main([*argv, *given]) == 0
    config = json.loads((run / "run.json").read_text())["config"]
    assert (config["units"], config["ablation"], config["memory_budget"]) == (
        units, ablation, memory,
    )  # fmt: skip
    assert json.loads((run / "run.json").read_text())["n_units"] == n_units


def test_run_defaults_to_runs_model(
    tiny_minilm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["study", "heads", "--model", "minilm", "--budget", "30", "--k", "1", "--random", "2"]
    assert main([*argv, "--no-progress"]) == 0
    assert (tmp_path / "runs" / "minilm" / "studies" / "heads" / "study.json").is_file()


def test_heads_needs_a_pretrained_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["study", "heads", "--model", "digits-cnn", "--run", str(tmp_path / "r")])
    assert code == 2
    assert "heads study values the attention heads of a pretrained encoder" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "r").exists()


def test_a_study_needs_a_run_or_a_bundled_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "critical"]) == 2
    assert "--run DIR is required" in capsys.readouterr().err


def test_heads_run_config_defaults() -> None:
    config = study_run_config("heads", "minilm", budget=None, seed=0, truncation=0.1)
    assert (config.budget, config.max_seconds) == (2 + 12 * 71, 1000.0)
    assert config.memory_budget == 1 << 30 and config.truncation is None
    assert config.walks_per_task == 1 and config.side == "both"
    config = study_run_config("heads", "minilm", budget=50, seed=0, truncation=0.1, seconds=9)
    assert (config.budget, config.max_seconds) == (50, 9)
    critical = study_run_config("critical", "digits-cnn", budget=70, seed=1, truncation=0.1)
    assert (critical.units, critical.truncation, critical.budget) == (None, 0.1, 70)
