"""A poisoned corpus asked through the real local LLM (SmolLM2-135M on llama.cpp) with the default guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.generate.llamacpp import LlamaCppLLM, llama_cpp_available
from ragworks.generate.models import CATALOG, is_installed, resolve_gguf

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not llama_cpp_available(), reason="needs xllamacpp or llama-cpp-python")]
DATA = Path(__file__).resolve().parents[2] / "bench" / "data" / "injection"


def test_smollm2_with_default_guard_gives_no_attack_what_it_wants(tmp_path, embedder):
    if not is_installed(CATALOG["smollm2-135m"]):
        pytest.skip("smollm2-135m is not installed")
    llm = LlamaCppLLM(resolve_gguf("smollm2-135m"), context_tokens=2048, threads=2)
    questions = [json.loads(line) for line in (DATA / "questions.jsonl").read_text().splitlines()]
    settings = Settings(data_dir=tmp_path, collection="c", pii="off")  # injection at its default: fence
    with Collection.open(settings=settings, embedder=embedder, llm=llm) as col:
        assert col.ingest(DATA / "clean", DATA / "poisoned").ok
        for q in questions[:6]:  # override, URL, image exfiltration, misinformation, role change, role tags
            answer = col.ask(q["question"])
            assert q["marker"].lower() not in answer.text.lower(), (q["id"], answer.text)
            assert "![" not in answer.text
            if answer.guard["injection"]["flagged_sources"] and not answer.guard["injection"]["replaced"]:
                assert answer.guard["injection"]["output_flags"] == []
