"""Document permissions on the ONNX query path (issue 14's probe suite covers torch through the server): the same
readers filter runs inside the store whichever embedder made the query vector, so a user of a collection embedded
and queried by the ONNX int8 model still gets k permitted passages and none it may not read, on every leg."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.documents import Document
from ragworks.store.base import Filter

pytestmark = pytest.mark.slow
QUESTION = "What is the quarterly revenue forecast for the northern region?"


def test_onnx_queries_read_only_permitted_passages_and_still_get_k(tmp_path: Path):
    from ragworks.embed.onnx import OnnxEmbedder

    onnx = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=tmp_path / "onnx", quantize=True)
    docs = []
    for marker, readers, n in (("FINSECRET", ["group:finance"], 20), ("LEGALSECRET", ["group:legal"], 5),
                               ("PUBLICNOTE", [], 5)):
        for i in range(n):
            text = (f"{marker}{i}: the quarterly revenue forecast for the northern region is {200 + i} million euros."
                    if marker != "PUBLICNOTE" else f"{marker}{i}: the canteen menu and the revenue summary are posted.")
            docs.append(Document(source=f"{marker.lower()}/{i}.md", text=text, metadata={"readers": readers}))
    settings = Settings(data_dir=tmp_path / "data", collection="c", llm="extractive", cache_backend="off")
    with Collection.open(settings=settings, embedder=onnx, llm=None) as col:
        col.add_documents(docs)
        ann = ("user:ann", "group:legal")
        for mode in ("dense", "bm25", "hybrid"):
            hits = col.search(QUESTION, k=10, mode=mode, filters=Filter(readers=ann))
            assert len(hits) == 10, mode  # 20 forbidden passages outrank the notes; ann still gets k
            assert not any("FINSECRET" in h.chunk.text for h in hits), mode
            assert sum("LEGALSECRET" in h.chunk.text for h in hits) == 5, mode
        answer = col.ask(QUESTION, filters=Filter(readers=ann))
        assert "FINSECRET" not in str(answer.to_dict())
