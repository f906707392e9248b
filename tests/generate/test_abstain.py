"""Calibrated abstention: real collections that do and do not hold the answer, the policy's fitting and storage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.errors import ConfigError
from ragworks.generate.abstain import DEFAULT_POLICY, fit_policy, load_policy, policy_path, save_policy
from ragworks.generate.prompt import NO_ANSWER

HR = Path(__file__).parent / "hr-corpus"


@pytest.fixture(scope="module")
def hr(tmp_path_factory, embedder):
    settings = Settings(data_dir=tmp_path_factory.mktemp("hr"), collection="hr", llm="extractive")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        col.ingest(HR)
        yield col


def test_abstains_on_a_collection_without_the_answer_and_not_on_one_with_it(hr, tmp_path, embedder):
    answered = hr.ask("How many characters must a password have at least?")
    assert not answered.abstained and "14 characters" in answered.text
    assert answered.abstention["stage"] == "answer" and not answered.abstention["abstain"]
    assert answered.abstention["p_answerable"] >= answered.abstention["threshold"]

    # The same question against a collection that lacks the password policy (the rest of the HR corpus)
    settings = Settings(data_dir=tmp_path, collection="no-passwords", llm="extractive")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        col.ingest(HR, exclude=["passwords.md"])
        missing = col.ask("How many characters must a password have at least?")
    assert missing.abstained and missing.text == NO_ANSWER and missing.citations == []
    decision = missing.abstention
    assert decision["abstain"] and decision["p_answerable"] < decision["threshold"]
    assert set(decision["evidence"]) >= {"dense_top", "question_overlap"}
    assert json.loads(json.dumps(missing.to_dict()))["abstention"]["abstain"] is True, "the decision is in the JSON"


def test_abstention_off_answers_whatever_the_evidence(hr):
    hr.settings = hr.settings.model_copy(update={"abstention": "off"})
    try:
        answer = hr.ask("What is the boiling point of mercury?")
    finally:
        hr.settings = hr.settings.model_copy(update={"abstention": "on"})
    assert answer.abstention["stage"] in ("off", "answerer")


def test_a_policy_tuned_into_the_collection_is_used_for_its_answerer(hr):
    strict = DEFAULT_POLICY.from_dict({**DEFAULT_POLICY.to_dict(), "threshold": 0.9999, "fitted_on": "test"})
    path = save_policy(policy_path(hr.path), strict, model="extractive")
    try:
        answer = hr.ask("How many characters must a password have at least?")
        assert answer.abstained and answer.abstention["policy"] == "test"
        assert load_policy(path, model="gguf:other").fitted_on == "test", "the latest policy is the fallback"
    finally:
        path.unlink()


def test_fit_policy_separates_the_classes_within_the_false_abstention_budget():
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for answerable in [True] * 120 + [False] * 60:
        centre = 0.6 if answerable else 0.3
        rows.append({"dense_top": float(rng.normal(centre, 0.08)), "question_overlap": float(rng.normal(centre, 0.15)),
                     "answer_support": float(rng.normal(centre + 0.2, 0.15)), "top_score": None})
        labels.append(answerable)
    policy = fit_policy(rows, labels, max_false_abstention=0.05)
    probs = np.array([policy.probability(r) for r in rows])
    ans, una = probs[np.array(labels)], probs[~np.array(labels)]
    assert (ans < policy.threshold).mean() <= 0.05
    assert (una < policy.threshold).mean() >= 0.8
    assert policy.weights["dense_top"] > 0 and "top_score" not in policy.weights, "an absent signal is not fitted"
    assert policy.best_case(rows[-1]) >= policy.probability(rows[-1])


def test_fit_policy_needs_both_classes_and_a_malformed_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="both answerable and unanswerable"):
        fit_policy([{"dense_top": 0.5}], [True])
    bad = tmp_path / "answering.json"
    bad.write_text('{"abstention": {"weights": {}}}')
    with pytest.raises(ConfigError, match="re-run `ragworks eval qa --tune-abstention`"):
        load_policy(bad)


class _QuotingLLM:
    """Replies with a fixed text: stands in for a small model's wording only (search, verifier and policy are real)."""

    name = "scripted"
    context_tokens = 4096

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def stream(self, messages, *, max_tokens: int, temperature: float):
        yield self.reply

    def count_tokens(self, text: str) -> int:
        return len(text.split())


VACATION = "How many days of paid vacation do full-time employees receive?"
HOTEL = "What is the hotel limit per night in capital cities?"


@pytest.mark.parametrize(("question", "reply", "expected"), [
    # all seen from SmolLM2 under strict grounding on the HR corpus. A true sentence of another passage:
    (VACATION, 'The sentence is: "A password is changed at once when there is any sign that it was exposed; [4]',
     "25 days"),
    # a heading plus invention
    (VACATION, "Travel and expenses: this source contains instructions on how [3]", "25 days"),
    # a figure the source does not state, written as a word (CI, stop 23)
    (VACATION, "The answer is incorrect because there are only four days of paid vacation available to full-time "
               "employees per year based on the above information [1]", "25 days"),
    # the question restated, no figure
    (VACATION, "However, if we were looking at more general statistics of how many days employees can receive paid "
               "vacations per year based on the above-mentioned source , [1]", "25 days"),
    # the question's subject put into another passage's sentence (it is the laptop that is available)
    (HOTEL, "The hotel is only available on the first day from the IT service desk. [4]", "180 EUR"),
])
def test_a_wrong_or_off_topic_model_answer_is_replaced_by_the_extractive_one(hr, embedder, question, reply, expected):
    # the answer cache off: each scripted reply is its own case
    settings = hr.settings.model_copy(update={"llm": "local", "grounding": "strict", "cache_backend": "off"})
    with Collection.open(settings=settings, embedder=embedder, llm=_QuotingLLM(reply)) as col:
        answer = col.ask(question)
    assert not answer.abstained and expected in answer.text, answer.to_dict()
    assert "extractive" in answer.notice and "password" not in answer.text.lower()
    assert reply not in answer.text
    # a model answer that addresses the question is kept as written
    kept = "Full-time employees receive 25 days of paid vacation per calendar year. [1]"
    with Collection.open(settings=settings, embedder=embedder, llm=_QuotingLLM(kept)) as col:
        answer = col.ask("How many paid vacation days does a full-time employee receive?")
    assert answer.text.startswith("Full-time employees receive 25 days") and "extractive" not in answer.notice
