"""`ragworks eval qa` end to end on a 20-question SQuAD v1.1 sample (real model, real collection), and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tests.conftest import REPO, SHARED_DATA

from ragworks.errors import ConfigError
from ragworks.evaluate.qa import load_dataset, select
from ragworks.evaluate.qa_cli import qa

# ../shared/data beside the repository, or beside the directory of worktrees
SQUAD = next((d / "squad-dev" / "dev-v1.1.json" for d in (SHARED_DATA, REPO.parent.parent / "shared" / "data")
              if (d / "squad-dev" / "dev-v1.1.json").is_file()), SHARED_DATA / "squad-dev" / "dev-v1.1.json")


def ragworks(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ragworks.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def small_squad(tmp_path_factory):
    """Three SQuAD v1.1 dev articles, four paragraphs each (a few seconds to ingest)."""
    if not SQUAD.is_file():
        pytest.skip(f"SQuAD v1.1 dev not found at {SQUAD} (set RAGWORKS_SHARED_DATA)")
    data = json.loads(SQUAD.read_text())["data"][:3]
    for article in data:
        article["paragraphs"] = article["paragraphs"][:4]
    path = tmp_path_factory.mktemp("squad") / "small-squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": data}))
    return path


def test_held_out_articles_make_a_third_of_the_sample_unanswerable(small_squad):
    dataset = load_dataset(small_squad)
    items, docs, held = select(dataset, sample=21, seed=3, held_out_fraction=1 / 3)
    assert len(held) == 1 and len(items) == 21
    unanswerable = [it for it in items if it.unanswerable]
    assert len(unanswerable) == 7 and all(it.article in held for it in unanswerable)
    assert all(not d.source.startswith(held[0] + "#") for d in docs), "held-out articles are not ingested"


def test_eval_qa_runs_end_to_end_on_a_20_question_sample(small_squad, tmp_path):
    out = tmp_path / "out"
    result = ragworks(
        "eval", "qa", str(small_squad), "--sample", "20", "--seed", "1", "--unanswerable-from-held-out-articles",
        "0.34", "--tune-abstention", "--llm", "extractive", "--collection", str(tmp_path / "col"),
        "--out", str(out), "--stem", "small")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "small.json").read_text())
    (config,) = report["configs"]
    m = config["metrics"]
    assert report["questions"] == 20 and m["answerable"] + m["unanswerable"] == 20 and m["unanswerable"] >= 5
    for key in ("exact_match", "f1", "rouge_l", "bleu", "contains_gold", "hit@k", "citation_precision",
                "citation_recall", "abstention_recall", "false_abstention", "unsupported_rate", "s_per_answer"):
        assert m[key] is not None, key
    assert m["hit@k"] >= 0.8 and m["contains_gold"] >= 0.5  # SQuAD paragraphs are easy to find among 8
    assert m["citation_precision"] >= 0.7
    # the fitted policy is stored in the collection's settings and the report
    stored = json.loads((tmp_path / "col" / "answering.json").read_text())
    assert stored["by_model"]["extractive"] == config["abstention_policy"]
    assert (out / "small.md").read_text().count("| `extractive` |") == 1
    assert (out / "small.png").stat().st_size > 10_000

    # a later run answers with the stored policy (as a test split would), decided online by Collection.ask
    again = ragworks(
        "eval", "qa", str(small_squad), "--sample", "6", "--seed", "2", "--unanswerable-from-held-out-articles",
        "0.34", "--llm", "extractive", "--abstention-policy", str(tmp_path / "col" / "answering.json"),
        "--collection", str(tmp_path / "col"), "--out", str(out), "--stem", "again")
    assert again.returncode == 0, again.stderr
    records = json.loads((out / "again.json").read_text())["configs"][0]["records"]
    assert all(r["evidence"] for r in records)
    assert any(r["abstained"] for r in records if r["unanswerable"])


def test_eval_qa_rejects_bad_input_with_a_clear_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok?", "answers": ["yes"], "context": "yes it is"}\nnot json\n')
    result = ragworks("eval", "qa", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode != 0 and "bad.jsonl:2" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(ConfigError, match="no such dataset file"):
        load_dataset(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="dev data"):
        qa(bad, tune_abstention=True, articles="test")
