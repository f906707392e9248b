"""Loading BEIR directories, and the clear errors a malformed one gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragworks.errors import RagworksError
from ragworks.evaluate.beir import DatasetError, load_beir

CORPUS = [
    {"_id": "d1", "title": "Vitamin D", "text": "Vitamin D deficiency is linked to bone loss."},
    {"_id": "d2", "title": "Statins", "text": "Statins lower LDL cholesterol."},
    {"_id": "d#3", "title": "", "text": "An id with a hash sign in it."},
]
QUERIES = [{"_id": "q1", "text": "vitamin d bones"}, {"_id": "q2", "text": "cholesterol drugs"},
           {"_id": "q9", "text": "an unjudged query"}]


def write_beir(root: Path, *, qrels: str | None = None, corpus: list | None = None, queries: list | None = None,
               split: str = "test") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if corpus is not False:
        (root / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus or CORPUS) + "\n")
    if queries is not False:
        (root / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries or QUERIES) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text(
        qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t2\nq2\td2\t1\nq2\td#3\t0\n"
    )
    return root


def test_split_queries_are_the_judged_ones_with_graded_qrels(tmp_path: Path) -> None:
    ds = load_beir(write_beir(tmp_path / "tiny"))
    assert ds.name == "tiny" and ds.split == "test"
    assert ds.queries == {"q1": "vitamin d bones", "q2": "cholesterol drugs"}
    assert ds.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1, "d#3": 0}}
    assert ds.corpus_size == 3 and ds.judged_docs_missing == 0


def test_doc_id_of_keeps_hash_signs_inside_ids(tmp_path: Path) -> None:
    ds = load_beir(write_beir(tmp_path / "tiny"))
    assert ds.doc_id_of(f"{ds.corpus_path}#d#3") == "d#3"


def test_missing_directory_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        load_beir(tmp_path / "nope")


def test_missing_corpus_names_the_stand_in_corpora_found(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "nf", corpus=False)
    (root / "variant-x").mkdir()
    (root / "variant-x" / "corpus.jsonl").write_text(json.dumps(CORPUS[0]) + "\n")
    with pytest.raises(DatasetError, match=r"no corpus\.jsonl; found variant-x/corpus\.jsonl: pass it with --corpus"):
        load_beir(root)
    assert load_beir(root, corpus=root / "variant-x" / "corpus.jsonl").judged_docs_missing == 2


def test_missing_queries_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"queries\.jsonl: no such file"):
        load_beir(write_beir(tmp_path / "t", queries=False))


def test_missing_split_lists_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no qrels/dev\.tsv \(available splits: test\)"):
        load_beir(write_beir(tmp_path / "t"), split="dev")


def test_bad_qrels_header(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "t", qrels="q1\td1\t1\n")
    with pytest.raises(DatasetError, match=r"test\.tsv:1: expected the header 'query-id<TAB>corpus-id<TAB>score'"):
        load_beir(root)


def test_qrels_row_with_wrong_column_count_names_the_line(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "t", qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq2 d2 1\n")
    with pytest.raises(DatasetError, match=r"test\.tsv:3: expected 3 tab-separated columns, got 1"):
        load_beir(root)


def test_non_integer_score(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "t", qrels="query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    with pytest.raises(DatasetError, match=r"test\.tsv:2: score 'high' is not an integer"):
        load_beir(root)


def test_judged_queries_missing_from_queries_file(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "t", qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq7\td2\t1\n")
    with pytest.raises(DatasetError, match=r"1 judged query not in queries\.jsonl \(q7\)"):
        load_beir(root)


def test_qrels_without_rows_or_without_relevant_documents(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no judgements"):
        load_beir(write_beir(tmp_path / "a", qrels="query-id\tcorpus-id\tscore\n"))
    with pytest.raises(DatasetError, match="no query has a relevant document"):
        load_beir(write_beir(tmp_path / "b", qrels="query-id\tcorpus-id\tscore\nq1\td1\t0\n"))


def test_invalid_json_in_queries_names_the_line(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "t")
    (root / "queries.jsonl").write_text(json.dumps(QUERIES[0]) + "\n{not json\n")
    with pytest.raises(DatasetError, match=r"queries\.jsonl:2: invalid JSON"):
        load_beir(root)


def test_dataset_errors_are_ragworks_errors_so_the_cli_prints_one_line(tmp_path: Path) -> None:
    assert issubclass(DatasetError, RagworksError)
    assert DatasetError.exit_code == 2


def test_limited_keeps_the_first_queries_and_their_qrels(tmp_path: Path) -> None:
    ds = load_beir(write_beir(tmp_path / "t")).limited(1)
    assert list(ds.queries) == ["q1"] and list(ds.qrels) == ["q1"]
