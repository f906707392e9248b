"""`ragworks tune` end to end on a small collection: pairs from the corpus, real training, before/after, switch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragworks.cli import app
from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed import versions
from ragworks.tune.run import TuneOptions, run_tune
from ragworks.tune.train import TrainConfig

pytestmark = pytest.mark.slow


def test_finetuning_without_labels_trains_measures_switches_and_rolls_back(
        make_collection: Callable[[], tuple[Path, Settings]]) -> None:
    path, settings = make_collection()
    options = TuneOptions(force=True, max_pairs=40, ict=20, test_fraction=0.3, method="finetune",
                          train=TrainConfig(budget_minutes=2, max_epochs=1, batch_size=8, eval_every=1000))
    report = run_tune(path, settings, options, log=lambda _: None)

    card = json.loads((report.model_dir / "card.json").read_text())
    assert card["data"]["origins"]["title"] >= 1 and card["data"]["origins"]["ict"] == 20
    assert card["data"]["train_pairs"] >= 8
    assert card["fusion"]["dense_weight"] is None  # no labelled dev queries: the configured weight stays
    assert card["training"]["method"] == "finetune"
    assert card["training"]["steps"] >= 1 and card["training"]["losses"]
    assert (report.model_dir / "loss.png").stat().st_size > 1000
    for when in ("before", "after"):
        for mode in ("dense", "hybrid"):
            assert 0.0 < card["scores"][when][mode]["ndcg@10"] <= 1.0
            assert card["scores"][when][mode]["recall@100"] > 0.0
    assert report.switched and card["switched"]
    for mode in ("dense", "hybrid"):  # the switch rule: it switched, so neither score dropped
        assert card["scores"]["after"][mode]["ndcg@10"] >= card["scores"]["before"][mode]["ndcg@10"]
    tuned_name = versions.model_name(settings, report.model_dir)
    with Collection.open(settings=settings, create=False, llm=None) as col:  # default settings → tuned model
        assert col.embedder.name == tuned_name
        assert col.search("lighthouse keepers", k=3)

    result = CliRunner().invoke(app, ["tune", "col", "--data-dir", str(settings.data_dir), "--rollback"])
    assert result.exit_code == 0, result.output
    assert "st:all-MiniLM-L6-v2" in result.output
    with Collection.open(settings=settings, create=False, llm=None) as col:
        assert col.embedder.name == "st:all-MiniLM-L6-v2"
        assert col.search("lighthouse keepers", k=3)

    cli = ["tune", "col", "--data-dir", str(settings.data_dir)]
    result = CliRunner().invoke(app, [*cli, "--switch-to", report.version])  # vectors kept: nothing to re-embed
    assert result.exit_code == 0, result.output
    assert "0 chunks embedded" in result.output
    listing = CliRunner().invoke(app, [*cli, "--list"])
    assert report.version in listing.output and "yes" in listing.output


def test_tune_on_a_missing_collection_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["tune", "nope", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "no collection" in str(result.exception)
