"""Near-duplicate collapse and MMR, on real near-duplicate passages through a real collection."""

from __future__ import annotations

import numpy as np
import pytest

from ragworks.collection import Collection
from ragworks.documents import Document
from ragworks.retrieve.hygiene import collapse_near_duplicates, jaccard, mmr_order, shingles

# A real passage (the sample corpus's Fresnel text, paraphrased) and two near copies of it, as mirrors and
# revised versions of a page look: a changed sentence, a different ending.
ORIGINAL = (
    "Augustin-Jean Fresnel, a French physicist, designed the lens that bears his name in 1822. Instead of one "
    "thick curved piece of glass, the Fresnel lens uses concentric rings of prisms, each bending light toward "
    "the focus. The result is far thinner and lighter than a conventional lens of the same focal length, and it "
    "let lighthouses project a beam visible more than twenty miles out to sea. The first Fresnel lens was "
    "installed in the Cordouan lighthouse at the mouth of the Gironde in 1823."
)
MIRROR = ORIGINAL.replace("a French physicist", "the French physicist and engineer")
REVISED = ORIGINAL.replace(
    "The first Fresnel lens was installed in the Cordouan lighthouse at the mouth of the Gironde in 1823.",
    "Cordouan, at the mouth of the Gironde, received the first one in 1823.",
)
OTHERS = [
    "Grace Darling and her father rowed through a storm in 1838 to rescue survivors of the Forfarshire, wrecked "
    "on the Farne Islands; the rescue made her a national heroine.",
    "Fog signals warned ships when lights could not be seen: bells, guns, sirens and the diaphone, whose "
    "two-tone grunt carried for miles across the water.",
    "John Harrison's marine chronometer H4 lost only five seconds on the voyage to Jamaica in 1761, solving "
    "the problem of finding longitude at sea.",
]


@pytest.fixture
def dup_collection(settings, embedder):
    col = Collection.open(settings=settings, embedder=embedder, llm=None)
    docs = [Document(source="original.md", text=ORIGINAL, title="Fresnel lens"),
            Document(source="mirror.md", text=MIRROR, title="Fresnel lens"),
            Document(source="revised.md", text=REVISED, title="Fresnel lens")]
    docs += [Document(source=f"other-{i}.md", text=t, title="Lighthouses") for i, t in enumerate(OTHERS)]
    assert col.add_documents(docs).ok
    yield col
    col.close()


def test_near_copies_have_high_shingle_jaccard_and_different_passages_low():
    a, b, c = shingles(ORIGINAL), shingles(MIRROR), shingles(REVISED)
    assert jaccard(a, b) > 0.8 and jaccard(a, c) > 0.7
    assert all(jaccard(a, shingles(o)) < 0.05 for o in OTHERS)


def test_near_duplicate_threshold_leaves_one_copy_in_collection_search(dup_collection):
    question = "Who designed the Fresnel lens and where was it first installed?"
    plain = dup_collection.search(question, k=4)
    assert {h.source for h in plain[:3]} == {"original.md", "mirror.md", "revised.md"}
    dup_collection.settings = dup_collection.settings.model_copy(update={"near_duplicate_threshold": 0.6})
    hits = dup_collection.search(question, k=4)
    fresnel = [h for h in hits if "Fresnel" in h.chunk.text]
    assert len(fresnel) == 1 and fresnel[0].chunk.id == plain[0].chunk.id  # the best-ranked copy stays
    assert len(hits) == 4  # the other slots are filled from further down


def test_collapse_keeps_everything_below_the_threshold(dup_collection):
    hits = dup_collection.search("lighthouse lens rescue fog chronometer", k=6)
    assert collapse_near_duplicates(hits, 1.0) == hits  # no two passages share every shingle
    assert len(collapse_near_duplicates(hits, 0.6)) == len(hits) - 2


def test_mmr_prefers_a_different_passage_over_a_near_copy():
    v = np.array([[1.0, 0.0, 0.0], [0.99, 0.14, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert mmr_order(v, [1.0, 0.95, 0.6], 1.0, 3) == [0, 1, 2]  # λ = 1: relevance only
    assert mmr_order(v, [1.0, 0.95, 0.6], 0.5, 3) == [0, 2, 1]


def test_mmr_setting_diversifies_collection_search_with_stored_vectors(dup_collection):
    question = "Who designed the Fresnel lens?"
    dup_collection.settings = dup_collection.settings.model_copy(update={"mmr_lambda": 0.3})
    embedder = dup_collection.embedder
    passages_embedded: list[int] = []
    original = embedder.embed_documents

    def counting(texts):
        passages_embedded.append(len(texts))
        return original(texts)

    embedder.embed_documents = counting  # a spy on the real embedder: MMR must read stored vectors
    try:
        hits = dup_collection.search(question, k=3)
    finally:
        del embedder.embed_documents
    assert "Fresnel" in hits[0].chunk.text
    assert sum("Fresnel" in h.chunk.text for h in hits) < 3
    assert passages_embedded == []
