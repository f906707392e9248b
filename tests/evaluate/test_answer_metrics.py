"""Answer metrics against their references: the SQuAD v1.1 scorer's definitions, rouge-score's ROUGE-L (checked
against an independent LCS computation), sacrebleu's documented corpus BLEU; and `score` on hand-made records."""

from __future__ import annotations

import pytest

from ragworks.evaluate import answer_metrics as am
from ragworks.evaluate.qa import parse_config, score


def test_squad_normalization_exact_match_and_f1_follow_the_official_scorer():
    # evaluate-v1.1.py: lower case, strip punctuation and articles, collapse whitespace
    assert am.normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert am.exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    assert am.token_f1("Broncos won", "Denver Broncos") == pytest.approx(0.5)  # P = 1/2, R = 1/2
    assert am.token_f1("Denver Broncos won the game", "Denver Broncos") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert am.best_over(am.token_f1, "Santa Clara", ["Levi's Stadium", "Santa Clara, California"]) == \
        pytest.approx(0.8)
    assert am.token_f1("", "anything") == 0.0
    assert am.strip_markers("It was 1822 [1][2, 3].") == "It was 1822."
    assert am.contains_gold("Fresnel presented it in 1822 [1].", ["1822"]) == 1.0
    assert am.contains_gold("in 18222", ["1822"]) == 0.0


def _lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x == y else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


@pytest.mark.parametrize(("prediction", "gold"), [
    ("the cat sat on the mat", "the cat is on the mat"),
    ("Augustin-Jean Fresnel presented the lens in 1822", "Augustin-Jean Fresnel"),
    ("nothing in common", "entirely different words"),
])
def test_rouge_l_equals_the_lcs_f_measure(prediction, gold):
    import re

    tok = lambda s: re.sub(r"[^a-z0-9]+", " ", s.lower()).split()  # noqa: E731 - rouge-score's tokenizer
    p, g = tok(prediction), tok(gold)
    lcs = _lcs(p, g)
    expected = 0.0 if lcs == 0 else 2 * (lcs / len(p)) * (lcs / len(g)) / (lcs / len(p) + lcs / len(g))
    assert am.rouge_l(prediction, gold) == pytest.approx(expected)


def test_corpus_bleu_matches_sacrebleus_documented_example():
    # sacrebleu's README: two reference streams, BLEU = 48.53
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    refs = [["The dog bit the man.", "The dog had bit the man."],
            ["It was not unexpected.", "No one was surprised."],
            ["The man bit him first.", "The man had bitten the dog."]]
    assert am.corpus_bleu(hyps, refs) == pytest.approx(48.53, abs=0.01)


def _rec(**kw):
    base = {"unanswerable": False, "answers": ["1822"], "prediction": "It was 1822 [1].", "abstained": False,
            "citations": [{"correct": True}], "gold_given": [1], "gold_hit": True, "sentences": 1, "unsupported": 0,
            "reattributed": 0, "draft_sentences": 1, "draft_unsupported": 0, "seconds": 1.0, "tokens": 10,
            "generation_s": 0.5}
    return {**base, **kw}


def test_score_counts_citations_abstention_and_unsupported_sentences():
    records = [
        _rec(prediction="1822 [1]."),
        _rec(prediction="It was 1823 [1][2].", citations=[{"correct": True}, {"correct": False}], sentences=2,
             unsupported=1, draft_sentences=2, draft_unsupported=1),
        _rec(abstained=True, prediction="The provided sources do not contain the answer.", citations=[]),
        _rec(unanswerable=True, answers=[], abstained=True, citations=[], tokens=0),
        _rec(unanswerable=True, answers=[], prediction="Made up [1].", citations=[{"correct": False}], tokens=0),
    ]
    m = score(records)
    assert (m["answerable"], m["unanswerable"]) == (3, 2)
    assert m["exact_match"] == pytest.approx(1 / 3)  # the abstained answerable question scores 0
    assert m["citation_precision"] == pytest.approx((1 + 0.5) / 2)
    assert m["citation_recall"] == pytest.approx(1.0)
    assert m["abstention_recall"] == pytest.approx(0.5)
    assert m["false_abstention"] == pytest.approx(1 / 3)
    assert m["unsupported_rate"] == pytest.approx(1 / 4)  # 1 of the 4 sentences spoken (abstentions say none)
    assert m["tokens_per_s"] == pytest.approx(30 / 1.5)


def test_parse_config_reads_settings_overrides_and_a_name():
    assert parse_config("extractive") == ("extractive", {"llm": "extractive"})
    assert parse_config("local,grounding=strict,name=local-strict") == (
        "local-strict", {"llm": "local", "grounding": "strict"})
