"""The in-house BM25 (`ragworks.lexical.bm25`) against bm25s, the reference implementation, and its lifecycle.

(Lives here while the index is an evaluation prototype; it belongs in tests/retrieve/ once the store uses it.)
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from ragworks.lexical.analysis import Analyzer
from ragworks.lexical.bm25 import BM25Index, idf_robertson

bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

TEXTS = [
    "Vitamin D deficiency accelerates bone loss in elderly women and men.",
    "Statins lower LDL cholesterol; cholesterol lowering reduces cardiovascular events.",
    "Slow-wave sleep consolidates declarative memory. Sleep deprivation impairs memory.",
    "Surgical masks reduced influenza transmission in households with children.",
    "Coffee drinking is associated with lower rates of liver cirrhosis and liver cancer.",
    "Recreational running does not increase knee osteoarthritis; running strengthens cartilage.",
    "Reducing dietary salt lowers systolic blood pressure in hypertensive adults.",
    "Antibiotics disrupt the gut microbiome for months; the microbiome recovers slowly.",
    "Bone density in women declines after menopause; vitamin D and calcium slow the decline.",
    "Memory and sleep: the hippocampus replays memories during slow-wave sleep.",
]
QUERIES = ["vitamin D bone loss", "sleep memory memory", "cholesterol statins heart", "liver", "the of and",
           "running knees cartilage osteoarthritis", "unknownword"]


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0), (1.5, 0.0)])
def test_scores_equal_bm25s_lucene(k1: float, b: float) -> None:
    stemmer = Stemmer.Stemmer("english")
    ref = bm25s.BM25(method="lucene", k1=k1, b=b)
    ref.index(bm25s.tokenize(TEXTS, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    ours = BM25Index(k1=k1, b=b)
    ours.add(range(len(TEXTS)), TEXTS)
    for q in QUERIES:
        terms = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)[0]
        known = [t for t in terms if t in ref.vocab_dict]
        expected = ref.get_scores(known) if known else np.zeros(len(TEXTS))
        got = np.zeros(len(TEXTS))
        for pid, score in ours.search(q, k=len(TEXTS)):
            got[pid] = score / (k1 + 1)  # bm25s drops the constant (k1 + 1) factor, as Lucene 8+ does
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=q)


def test_results_are_best_first_and_only_matching_passages() -> None:
    index = BM25Index()
    index.add(range(len(TEXTS)), TEXTS)
    hits = index.search("vitamin D bone density women", k=3)
    assert [pid for pid, _ in hits][:2] == [8, 0]
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(hits))
    assert index.search("unknownword", k=5) == []
    assert len(index.search("liver", k=10)) == 1


def test_allowed_restricts_results_and_remove_forgets_passages() -> None:
    index = BM25Index()
    index.add(range(len(TEXTS)), TEXTS)
    assert [p for p, _ in index.search("sleep memory", k=5, allowed=np.array([9]))] == [9]
    index.remove([2, 9])
    assert index.search("sleep memory", k=5) == []
    index.add([9], ["a new passage about sleep"])
    assert [p for p, _ in index.search("sleep", k=5)] == [9]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    index = BM25Index(k1=0.9, b=0.4, idf="robertson", analyzer=Analyzer(stemmer=None))
    index.add([10, 20, 30, *range(100, 100 + len(TEXTS))], ["alpha beta", "beta gamma", "gamma", *TEXTS])
    path = tmp_path / "lexical-bm25.npz"
    index.save(path)
    loaded = BM25Index.load(path)
    assert not path.with_name(path.name + ".tmp").exists()
    assert (loaded.k1, loaded.b, loaded.idf_variant, loaded.analyzer) == (0.9, 0.4, "robertson", index.analyzer)
    for q in (*QUERIES, "beta gamma"):
        assert loaded.search(q, k=5) == index.search(q, k=5)


def test_robertson_idf_is_never_negative() -> None:
    assert (idf_robertson(np.array([1.0, 5.0, 9.0, 10.0]), 10) >= 0).all()


def test_analyzer_without_stemming_keeps_word_forms() -> None:
    assert Analyzer(stemmer=None)("The Running dogs") == ["running", "dogs"]
    assert Analyzer()("The Running dogs") == ["run", "dog"]


def test_analyzer_can_keep_one_character_terms() -> None:
    assert Analyzer()("Vitamin D and type 2") == ["vitamin", "type"]
    assert Analyzer(min_chars=1)("Vitamin D and type 2") == ["vitamin", "d", "type", "2"]
