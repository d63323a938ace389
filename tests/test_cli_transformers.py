"""``neuronshapley run`` on a transformer: a tiny random BERT from a factory file, dict inputs, a
label-free metric and forward/output callables given as specs or by the data factory, heads
selected by pattern; the values equal the library call's."""

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neuronshapley.cli import main

pytest.importorskip(
    "transformers",
    reason="transformers is not installed: pip install 'neuronshapley[transformers]'",
)

FACTORY = """
import torch
import transformers

from neuronshapley.pytorch.metrics import from_outputs


def model():
    config = transformers.BertConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        vocab_size=50, max_position_embeddings=32,
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def tokens(n, seed):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (n, 7), generator=generator)
    lengths = torch.randint(3, 8, (n,), generator=generator)
    mask = (torch.arange(7)[None, :] < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


REFERENCES = torch.randn(12, 16, generator=torch.Generator().manual_seed(3))


def similarity(embeddings):
    # Label-free: mean cosine similarity of each embedding to a fixed reference vector (the
    # hidden states are averaged over positions when no output callable pools them).
    if embeddings.dim() == 3:
        embeddings = embeddings.mean(dim=1)
    return float(torch.cosine_similarity(embeddings.double(), REFERENCES.double(), dim=-1).mean())


def pooled(result, inputs):
    weights = inputs["attention_mask"].unsqueeze(-1).to(result.last_hidden_state.dtype)
    return (result.last_hidden_state * weights).sum(dim=1) / weights.sum(dim=1)


def call(model, inputs):
    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])


def data():
    return {"data": tokens(12, 1), "reference": tokens(20, 2)}


def data_with_metric():
    return {**data(), "metric": similarity}


def data_with_everything():
    return {**data(), "metric": similarity, "forward": call, "output": pooled}


def data_with_typo():
    return {**data(), "metrics": similarity}


SCALE = 2.0  # not a function: naming it is an error


def forward(model, batch):
    return call(model, batch)


def output(result, batch):
    return pooled(result, batch)
"""

UNITS = "heads:encoder.layer.*.attention"
BUDGET = "60"


@pytest.fixture(autouse=True)
def offline() -> Iterator[None]:
    """Nothing here may reach the hub: the model is built from a config."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    path = tmp_path / "bert.py"
    path.write_text(FACTORY)
    return path


def _run(factory: Path, out: Path, data: str, *extra: str) -> int:
    return main(
        [
            "run",
            "--model",
            f"{factory}:model",
            "--data",
            f"{factory}:{data}",
            "--units",
            UNITS,
            "--k",
            "1",
            "--budget",
            BUDGET,
            "--truncation",
            "off",
            "--no-progress",
            "--out",
            str(out),
            *extra,
        ]
    )


def _values(out: Path) -> dict[str, float]:
    from neuronshapley import ShapleyResult

    result = ShapleyResult.load(out)
    return dict(zip(result.player_names, result.values.tolist(), strict=True))


def _library_values(factory: Path, **game_options: object) -> dict[str, float]:
    """The same run through the library: NeuronGame + tmab_shapley with the CLI's settings."""
    import importlib.util

    import neuronshapley as ns
    from neuronshapley.units import NeuronGame

    spec = importlib.util.spec_from_file_location("bert_factory_for_test", factory)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bundle = module.data()
    game = NeuronGame(
        module.model(),
        [UNITS],
        data=bundle["data"],
        reference=bundle["reference"],
        metric=module.similarity,
        ablation="mean",
        **{name: getattr(module, value) for name, value in game_options.items()},
    )
    result = ns.tmab_shapley(
        game, k=1, max_evaluations=int(BUDGET), truncation=None, seed=0, tol=1e-3, delta=0.05
    )
    return dict(zip(result.player_names, result.values.tolist(), strict=True))


def test_metric_spec_with_label_free_metric_equals_the_library(factory: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert _run(factory, out, "data", "--metric", f"{factory}:similarity") == 0
    values = _values(out)
    assert sorted(values) == [f"encoder.layer.{i}.attention:h{h}" for i in (0, 1) for h in (0, 1)]
    assert any(abs(v) > 1e-6 for v in values.values())  # not the 0.0 of dummy labels
    library = _library_values(factory)
    assert values.keys() == library.keys()
    np.testing.assert_allclose(list(values.values()), list(library.values()), rtol=0, atol=1e-12)
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["metric"] == f"{factory.resolve()}:similarity"
    assert set(record["code"]) == {"model", "data", "metric"}
    assert record["metric"] == "similarity"


def test_factory_metric_forward_and_output_are_used(factory: Path, tmp_path: Path, capsys):
    """Today's bug: a 'metric' key was ignored and accuracy scored against dummy labels."""
    out = tmp_path / "run"
    assert _run(factory, out, "data_with_everything") == 0
    printed = capsys.readouterr().out
    assert "prefix reuse is off" in printed
    record = json.loads((out / "run.json").read_text())
    assert record["metric"] == "similarity"
    library = _library_values(factory, forward="call", output="pooled")
    np.testing.assert_allclose(
        list(_values(out).values()), list(library.values()), rtol=0, atol=1e-12
    )


def test_forward_and_output_specs_are_recorded_and_part_of_the_identity(
    factory: Path, tmp_path: Path, capsys
):
    out = tmp_path / "run"
    specs = ["--forward", f"{factory}:forward", "--output", f"{factory}:output"]
    assert _run(factory, out, "data_with_metric", *specs) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["identity"]["output"] == f"{factory.resolve()}:output"
    assert set(record["code"]) == {"model", "data", "forward", "output"}
    library = _library_values(factory, forward="call", output="pooled")
    np.testing.assert_allclose(
        list(_values(out).values()), list(library.values()), rtol=0, atol=1e-12
    )
    capsys.readouterr()
    # Resuming without --output is another run: refused in one line.
    assert _run(factory, out, "data_with_metric", "--resume", "--budget", "80") == 2
    error = capsys.readouterr().err
    assert "other settings" in error and "output" in error


def test_unused_factory_key_is_an_error(factory: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert _run(factory, out, "data_with_typo") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "'metrics'" in error
    assert "data, reference, metric, forward, output" in error
    assert not out.exists()


def test_metric_given_twice_is_an_error(factory: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert _run(factory, out, "data_with_metric", "--metric", f"{factory}:similarity") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "'metric'" in error and "--metric" in error


@pytest.mark.parametrize(
    ("option", "spec", "expected"),
    [
        ("--metric", "nowhere.py:metric", "--metric: the file .*nowhere.py does not exist"),
        ("--forward", "{factory}:nothing", "--forward: .* has no function 'nothing'"),
        ("--output", "{factory}", "--output must be .*'path/to/file.py:function'"),
        ("--metric", "{factory}:SCALE", "--metric: .* has no function 'SCALE'"),
    ],
)
def test_bad_specs_are_one_line_and_exit_2(
    factory: Path, tmp_path: Path, capsys, option: str, spec: str, expected: str
):
    import re

    out = tmp_path / "run"
    code = _run(factory, out, "data", option, spec.format(factory=factory))
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert len(error.splitlines()) == 1
    assert re.search(expected, error), error
    assert not out.exists()
