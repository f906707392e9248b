"""Per-language BM25 analysis: detection, Vietnamese tones kept, and both embedded BM25 legs indexing the same terms."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.lexical.analysis import fts5_like_analyzer
from ragworks.lexical.languages import LanguageAnalyzer, analyze, detect_language
from ragworks.store.embedded import DB_NAME, LEGACY_FTS_SQL, EmbeddedStore

VI_DOCS = {
    "ban.md": "# Bàn gỗ\n\nCửa hàng này bán bàn gỗ lim và ghế tre cho quán cà phê.",
    "ban2.md": "# Người bạn\n\nBạn tôi sống ở Huế và thích nghe nhạc trịnh mỗi tối.",
    "ban3.md": "# Ban nhạc\n\nBan nhạc rock biểu diễn ở sân vận động Mỹ Đình tối nay.",
    "pho.md": "# Phở\n\nNước dùng phở được ninh từ xương bò trong tám tiếng với hoa hồi và quế.",
}
EN_DOCS = {
    "running.md": "# Running\n\nThe runners were running along the river before the marathon.",
    "cafe.md": "# Café\n\nThe café on the corner roasts its own coffee beans.",
}


@pytest.mark.parametrize(("text", "language"), [
    ("Nước dùng phở được ninh từ xương bò trong tám tiếng.", "vietnamese"),
    ("Món phở nào nổi tiếng?", "vietnamese"),
    ("The broth is simmered for eight hours with star anise.", "english"),
    ("The café serves crème brûlée.", "english"),  # a few marks do not make a text Vietnamese
    ("COVID-19 vaccine", "english"),
    ("Le chat est sur la table et les enfants sont dans la maison.", "french"),
    ("Der Hund ist nicht in dem Haus und die Katze auch nicht.", "german"),
    ("東京は日本の首都です", "other"),
    ("Москва — столица России", "other"),
    ("", "english"),
])
def test_language_is_detected_from_script_marks_and_function_words(text, language):
    assert detect_language(text) == language


def test_vietnamese_keeps_tones_and_gets_no_english_stemmer():
    terms = analyze("Bán bàn, bạn và ban nhạc", "vietnamese")
    assert terms == ["bán", "bàn", "bạn", "ban", "nhạc"]  # four different words; "và" is a function word
    assert analyze("này đây cây", "vietnamese") == ["đây", "cây"]
    # what every passage used to get: FTS5 folded the tones away, the in-memory leg's English stemmer mangled words
    assert analyze("bán bàn bạn", "english") == ["ban", "ban", "ban"]
    assert fts5_like_analyzer()("đây cây") == ["đâi", "câi"]


def test_decomposed_and_precomposed_vietnamese_are_the_same_terms():
    precomposed = "Tiếng Việt"
    decomposed = "Tie\u0302\u0301ng Vie\u0323\u0302t"  # e + circumflex + acute; e + dot below + circumflex
    assert precomposed != decomposed
    assert analyze(decomposed, "vietnamese") == analyze(precomposed, "vietnamese") == ["tiếng", "việt"]


def test_english_keeps_the_fts5_legs_former_terms_and_cjk_becomes_character_pairs():
    assert analyze("The runners were running in the café", "english") == ["runner", "run", "cafe"]
    assert analyze("東京都", "other") == ["東京", "京都"]
    assert analyze("hindi हिन्दी_text", "other") == ["hindi", "हिन्दी", "text"]  # marks stay inside the word


def test_a_fixed_language_overrides_detection():
    assert LanguageAnalyzer("vietnamese")("running dogs") == ["running", "dogs"]
    with pytest.raises(ValueError, match="unknown text language"):
        LanguageAnalyzer("klingon")


def _open(tmp_path, embedder, name="c", **kw) -> Collection:
    return Collection.open(name, settings=Settings(data_dir=tmp_path, llm="extractive", **kw), embedder=embedder,
                           llm=None)


def _fill(col: Collection) -> None:
    for source, text in {**VI_DOCS, **EN_DOCS}.items():
        col.add_text(text, source=source)


def _bm25_sources(col: Collection, query: str) -> list[str]:
    return [h.source for h in col.search(query, mode="bm25", k=10)]


def test_both_embedded_bm25_legs_tell_vietnamese_tones_apart_and_agree(tmp_path, embedder):
    memory = _open(tmp_path, embedder, lexical_backend="memory")
    _fill(memory)
    fts5 = _open(tmp_path, embedder, lexical_backend="fts5")
    for col in (memory, fts5):
        assert _bm25_sources(col, "bạn") == ["ban2.md"]  # not the table (bàn), selling (bán) or the band (ban)
        assert _bm25_sources(col, "ban") == ["ban3.md"]
        assert _bm25_sources(col, "ban nhạc")[0] == "ban3.md"
        assert _bm25_sources(col, "bàn gỗ") == ["ban.md"]
        assert _bm25_sources(col, "nước dùng phở ninh bao lâu?")[0] == "pho.md"
        assert _bm25_sources(col, "who runs by the river")[0] == "running.md"  # English still stemmed
        assert _bm25_sources(col, "cafe")[0] == "cafe.md"  # and its marks folded
    for q in ("bạn", "bàn gỗ bán", "phở bò hoa hồi", "running café", "ban nhạc tối nay"):
        assert _bm25_sources(memory, q) == _bm25_sources(fts5, q), q
    assert isinstance(memory.store, EmbeddedStore) and memory.store._bm25 is not None
    assert isinstance(fts5.store, EmbeddedStore) and fts5.store._bm25 is None
    # deleting removes exactly the analyzed terms it indexed (FTS5 external content needs the same text back)
    memory.delete("ban2.md")
    assert _bm25_sources(memory, "bạn") == [] and _bm25_sources(fts5, "bạn") == []
    memory.close()
    fts5.close()


def test_a_collection_made_before_keeps_its_fts5_tokenizer_and_still_deletes_cleanly(tmp_path, embedder):
    path = tmp_path / "old"
    path.mkdir()
    # what a collection made before per-language analysis holds
    with contextlib.closing(sqlite3.connect(path / DB_NAME, isolation_level=None)) as conn:
        conn.execute(LEGACY_FTS_SQL)
    EmbeddedStore(path, model_name=embedder.name, dimension=embedder.dimension).close()
    col = _open(tmp_path, embedder, name="old", lexical_backend="fts5")
    _fill(col)
    assert isinstance(col.store, EmbeddedStore) and col.store.lexical_analyzer is None
    # the old tokenizer folds tones: "bạn" also finds the table, selling and the band
    assert set(_bm25_sources(col, "bạn")) == {"ban.md", "ban2.md", "ban3.md"}
    col.delete("ban.md")
    assert set(_bm25_sources(col, "bạn")) == {"ban2.md", "ban3.md"}
    with contextlib.closing(sqlite3.connect(path / DB_NAME, isolation_level=None)) as conn:
        conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES('integrity-check', 1)")  # raises if corrupt
    col.close()
    # in memory, the old analysis too: it never folded marks, so an old collection's two legs disagree here, as they
    # always did on Vietnamese
    memory = _open(tmp_path, embedder, name="old", lexical_backend="memory")
    assert _bm25_sources(memory, "bạn") == ["ban2.md"]
    memory.close()
