"""BEIR-format datasets: `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv` in one directory.

Loaded the way BEIR's own `GenericDataLoader` does (the split's queries are the ones its qrels judge), but a
malformed directory fails with a `DatasetError` that names the file, the line and what to fix, never a KeyError.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ragworks.errors import RagworksError

Qrels = dict[str, dict[str, int]]
QRELS_HEADER = ("query-id", "corpus-id", "score")


class DatasetError(RagworksError):
    """An evaluation dataset directory is missing a file or has a malformed one."""

    exit_code = 2


@dataclass(slots=True)
class BeirDataset:
    """One split of a BEIR dataset: the judged queries, their qrels, and where the corpus is."""

    name: str
    root: Path
    corpus_path: Path
    split: str
    queries: dict[str, str]
    qrels: Qrels
    corpus_size: int = 0
    judged_docs_missing: int = 0  # qrels rows naming a corpus id the corpus lacks (a processed stand-in corpus)
    notes: list[str] = field(default_factory=list)

    def doc_id_of(self, source: str) -> str:
        """The BEIR corpus id of a hit, from the loader's `<corpus file>#<_id>` source."""
        prefix = f"{self.corpus_path}#"
        if source.startswith(prefix):
            return source[len(prefix) :]
        return source.rpartition("#")[2]

    def limited(self, n: int | None) -> BeirDataset:
        """The first `n` queries (in qrels order) and their qrels; all of them when `n` is None."""
        if n is None or n >= len(self.queries):
            return self
        keep = list(self.queries)[:n]
        return BeirDataset(self.name, self.root, self.corpus_path, self.split, {q: self.queries[q] for q in keep},
                           {q: self.qrels[q] for q in keep}, self.corpus_size, self.judged_docs_missing,
                           [*self.notes, f"limited to the first {n} queries"])


def available_splits(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []


def find_corpus(root: Path) -> Path:
    """`root/corpus.jsonl`; without it, a DatasetError naming any stand-in corpora found below `root`."""
    path = root / "corpus.jsonl"
    if path.is_file():
        return path
    variants = sorted(str(p.relative_to(root)) for p in root.glob("*/corpus.jsonl"))
    hint = f"; found {', '.join(variants)}: pass it with --corpus" if variants else ""
    raise DatasetError(f"{root}: no corpus.jsonl{hint}")


def read_qrels(path: Path) -> Qrels:
    """A BEIR qrels TSV (header `query-id<TAB>corpus-id<TAB>score`, integer scores) → {qid: {docid: rel}}."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such qrels file")
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if tuple(h.strip().lower() for h in header) != QRELS_HEADER:
            raise DatasetError(
                f"{path}:1: expected the header 'query-id<TAB>corpus-id<TAB>score', got {'<TAB>'.join(header)!r}"
            )
        for lineno, line in enumerate(f, 2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) != 3:
                raise DatasetError(f"{path}:{lineno}: expected 3 tab-separated columns, got {len(cols)}: {line!r}")
            qid, docid, score = (c.strip() for c in cols)
            if not qid or not docid:
                raise DatasetError(f"{path}:{lineno}: empty query id or corpus id: {line!r}")
            try:
                rel = int(score)
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: score {score!r} is not an integer") from None
            qrels.setdefault(qid, {})[docid] = rel
    if not qrels:
        raise DatasetError(f"{path}: no judgements (a header and no rows)")
    return qrels


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc})") from None
            if not isinstance(rec, dict) or "_id" not in rec:
                raise DatasetError(f"{path}:{lineno}: expected a JSON object with an '_id' field")
            yield lineno, rec


def read_queries(path: Path) -> dict[str, str]:
    """BEIR queries.jsonl ({"_id", "text"} per line) → {qid: text}."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (a BEIR directory has queries.jsonl)")
    out: dict[str, str] = {}
    for lineno, rec in _jsonl_records(path):
        text = rec.get("text")
        if not isinstance(text, str):
            raise DatasetError(f"{path}:{lineno}: query {rec['_id']!r} has no 'text' string")
        out[str(rec["_id"])] = text
    return out


def read_corpus_ids(path: Path) -> set[str]:
    return {str(rec["_id"]) for _, rec in _jsonl_records(path)}


def read_corpus(path: Path) -> dict[str, tuple[str, str]]:
    """{doc id: (title, text)} of a BEIR corpus.jsonl (for reference retrievers that index it directly)."""
    out: dict[str, tuple[str, str]] = {}
    for _, rec in _jsonl_records(path):
        title, text = rec.get("title") or "", rec.get("text") or ""
        out[str(rec["_id"])] = (title if isinstance(title, str) else "", text if isinstance(text, str) else "")
    return out


def load_beir(root: str | Path, *, split: str = "test", corpus: str | Path | None = None,
              name: str | None = None) -> BeirDataset:
    """Load one split of the BEIR directory `root`; `corpus` replaces `root/corpus.jsonl` (a stand-in corpus).

    The split's queries are those its qrels judge; a judged query missing from queries.jsonl is an error.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (expected a BEIR dataset: corpus.jsonl, queries.jsonl, qrels/)")
    corpus_path = Path(corpus).expanduser().resolve() if corpus is not None else find_corpus(root)
    if not corpus_path.is_file():
        raise DatasetError(f"{corpus_path}: no such corpus file")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = available_splits(root)
        have = f"available splits: {', '.join(splits)}" if splits else "no qrels/*.tsv at all"
        raise DatasetError(f"{root}: no qrels/{split}.tsv ({have})")
    qrels = read_qrels(qrels_path)
    all_queries = read_queries(root / "queries.jsonl")
    missing = [q for q in qrels if q not in all_queries]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise DatasetError(
            f"{qrels_path}: {len(missing)} judged quer{'y' if len(missing) == 1 else 'ies'} not in queries.jsonl "
            f"({shown}); the qrels and the queries come from different datasets or versions"
        )
    if not any(rel > 0 for judged in qrels.values() for rel in judged.values()):
        raise DatasetError(f"{qrels_path}: no query has a relevant document (every score is 0 or less)")
    corpus_ids = read_corpus_ids(corpus_path)
    judged_missing = sum(1 for judged in qrels.values() for d in judged if d not in corpus_ids)
    notes = []
    if judged_missing:
        notes.append(f"{judged_missing} qrels rows name documents absent from {corpus_path.name}")
    return BeirDataset(
        name=name or root.name, root=root, corpus_path=corpus_path, split=split,
        queries={q: all_queries[q] for q in qrels}, qrels=qrels, corpus_size=len(corpus_ids),
        judged_docs_missing=judged_missing, notes=notes,
    )
