"""Document permissions inside the stores (ragworks.access): both backends, every retrieval leg, before top-k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragworks.errors import DocumentNotFound, InvalidReaders
from ragworks.store.base import Filter

ANN = ("group:legal", "user:ann")  # ann is in legal
FINANCE = ("group:finance", "user:fay")
QUESTION = "What is the quarterly revenue forecast for the northern region?"


def _corpus(col, where: Path) -> None:
    """40 finance-only passages that match the question best, 12 public ones that match it less."""
    docs = []
    for i in range(40):
        docs.append({"_id": f"fin{i}", "text": f"The quarterly revenue forecast for the northern region is {100 + i} "
                     f"million euros, says finance memo {i}.", "readers": ["group:finance"]})
    for i in range(12):
        docs.append({"_id": f"pub{i}", "text": f"Regional office {i} publishes its opening hours and a revenue "
                     "summary once a year.", "readers": []})
    path = where / f"{col.path.name}-corpus.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs))
    report = col.ingest(path)
    assert report.ok, report.to_dict()


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_search_returns_k_permitted_hits_when_forbidden_ones_rank_higher(open_collection, mode, tmp_path: Path):
    col = open_collection()
    _corpus(col, tmp_path)
    unrestricted = col.search(QUESTION, k=5, mode=mode)
    assert all("#fin" in h.source for h in unrestricted)  # the forbidden passages really do rank first
    hits = col.search(QUESTION, k=5, mode=mode, filters=Filter(readers=ANN))
    assert len(hits) == 5
    assert all("#pub" in h.source for h in hits)
    fin = col.search(QUESTION, k=5, mode=mode, filters=Filter(readers=FINANCE))
    assert len(fin) == 5 and all("#fin" in h.source for h in fin)
    nobody = col.search(QUESTION, k=5, mode=mode, filters=Filter(readers=()))  # public documents only
    assert len(nobody) == 5 and all("#pub" in h.source for h in nobody)


def test_answers_list_and_get_see_only_permitted_documents(open_collection, tmp_path: Path):
    col = open_collection()
    _corpus(col, tmp_path)
    answer = col.ask(QUESTION, filters=Filter(readers=ANN))
    assert all("#pub" in c.source for c in answer.citations)
    assert "million euros" not in answer.text
    listed = col.documents(limit=100, readers=ANN)
    assert len(listed) == 12 and all("#pub" in d.source for d in listed)
    assert len(col.documents(limit=100)) == 52
    fin_source = next(d.source for d in col.documents(limit=100) if "#fin" in d.source)
    with pytest.raises(DocumentNotFound):
        col.document(fin_source, readers=ANN)
    doc, text, _ = col.document(fin_source, readers=FINANCE)
    assert doc.readers == ("group:finance",) and "million euros" in text


def test_set_readers_applies_at_once_without_reembedding(open_collection, tmp_path: Path):
    col = open_collection()
    _corpus(col, tmp_path)
    fin0 = next(d.source for d in col.documents(limit=100) if d.source.endswith("#fin0"))
    assert col.set_readers(fin0, ["group:legal"]) == 1
    hits = col.search(QUESTION, k=3, mode="hybrid", filters=Filter(readers=ANN))
    assert hits[0].source == fin0
    assert col.document(fin0, readers=ANN)[0].readers == ("group:legal",)
    with pytest.raises(InvalidReaders):
        col.set_readers(fin0, ["legal"])  # no kind: refused, nothing changed
    assert col.document(fin0)[0].readers == ("group:legal",)
    with pytest.raises(DocumentNotFound):  # a caller may not re-permission what it cannot read
        col.set_readers(fin0, [], as_readers=FINANCE)


def test_file_readers_come_from_sidecar_folder_rule_and_default(open_collection, tmp_path: Path):
    col = open_collection(default_readers=["group:staff"])
    root = tmp_path / "files"
    (root / "hr").mkdir(parents=True)
    (root / "memo.txt").write_text("The cafeteria opens at eight in the morning.")
    (root / "salaries.txt").write_text("The salary bands of engineers are reviewed in March.")
    (root / "salaries.txt.readers").write_text("# HR and the CFO\ngroup:hr\nuser:cfo\n")
    (root / "hr" / "review.txt").write_text("Performance reviews are written by each team lead.")
    (root / "hr" / ".ragworks-readers").write_text("group:hr\n")
    report = col.ingest(root)
    assert report.ok and report.count("new") == 3  # the rule files are not documents
    readers = {Path(d.source).name: d.readers for d in col.documents()}
    assert readers == {"memo.txt": ("group:staff",), "salaries.txt": ("group:hr", "user:cfo"),
                       "review.txt": ("group:hr",)}
    (root / "salaries.txt.readers").write_text("group:payroll\n")
    again = col.ingest(root)
    assert again.chunks_embedded == 0 and again.chunks_written == 0
    assert {Path(d.source).name: d.readers for d in col.documents()}["salaries.txt"] == ("group:payroll",)
    hits = col.search("salary bands", k=3, filters=Filter(readers=("user:x", "group:payroll")))
    assert Path(hits[0].source).name == "salaries.txt"
    assert "salaries.txt" not in {Path(h.source).name for h in col.search(
        "salary bands", k=3, filters=Filter(readers=("user:x", "group:hr")))}


def test_malformed_readers_fail_their_item_only(open_collection, tmp_path: Path):
    col = open_collection()
    root = tmp_path / "bad"
    root.mkdir()
    (root / "ok.txt").write_text("Visitors sign in at the front desk.")
    (root / "secret.txt").write_text("The vault code is changed every Friday.")
    (root / "secret.txt.readers").write_text("finance\n")  # no kind: the file must not go in as public
    (root / "records.jsonl").write_text("\n".join([
        json.dumps({"_id": "a", "text": "Parking is free on Sundays.", "readers": ["group:all"]}),
        json.dumps({"_id": "b", "text": "Board minutes are confidential.", "readers": [42]}),
        json.dumps({"_id": "c", "text": "Lunch is served at noon.", "acl": "user:ann, group:cooks"}),
    ]))
    report = col.ingest(root)
    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["secret.txt"].status == "failed" and by_name["secret.txt"].reason == "invalid-readers"
    assert "secret.txt.readers" in by_name["secret.txt"].error
    assert any("records.jsonl:2" in w and "not a string" in w for w in by_name["records.jsonl"].warnings)
    sources = {d.source.rsplit("/", 1)[-1]: d.readers for d in col.documents()}
    assert sources == {"ok.txt": (), "records.jsonl#a": ("group:all",),
                       "records.jsonl#c": ("group:cooks", "user:ann")}
    assert all("secret" not in h.source for h in col.search("vault code", k=5))


def test_a_permission_change_by_another_process_reaches_a_warm_search(tmp_path: Path, embedder):
    """The embedded store keeps each filter's allowed chunk ids between searches: a change made through another
    store object (another process: the CLI while a server runs) must still apply to the next search."""
    from ragworks.collection import Collection
    from ragworks.config import Settings

    settings = Settings(data_dir=tmp_path / "data", collection="warm", llm="extractive")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as server:
        _corpus(server, tmp_path)
        for mode in ("dense", "bm25", "hybrid"):  # warm: the allowed ids of ANN's filter are cached
            assert all("#pub" in h.source for h in server.search(QUESTION, k=5, mode=mode,
                                                                 filters=Filter(readers=ANN)))
        fin3 = next(d.source for d in server.documents(limit=100) if d.source.endswith("#fin3"))
        with Collection.open(settings=settings, embedder=embedder, llm=None) as cli:
            assert cli.set_readers(fin3, ["user:ann"]) == 1
        for mode in ("dense", "bm25", "hybrid"):
            hits = server.search(QUESTION, k=5, mode=mode, filters=Filter(readers=ANN))
            assert hits[0].source == fin3, mode
        with Collection.open(settings=settings, embedder=embedder, llm=None) as cli:
            cli.set_readers(fin3, ["group:finance"])
        assert all("#pub" in h.source for h in server.search(QUESTION, k=5, filters=Filter(readers=ANN)))
