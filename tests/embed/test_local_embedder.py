"""The packaged all-MiniLM-L6-v2, used the way the ingest pipeline uses it (two threads)."""

from __future__ import annotations

import threading

import numpy as np


def test_vectors_are_unit_length_and_match_the_model_whatever_the_batch_order(embedder):
    texts = ["short", "a much longer passage about lighthouse lenses " * 12, "tides", "fog " * 80]
    vecs = embedder.embed_documents(texts)
    reference = embedder._model.encode(texts, normalize_embeddings=True)
    assert vecs.shape == (4, 384) and vecs.dtype == np.float32
    assert np.allclose(vecs, reference, atol=1e-5)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_counting_tokens_while_embedding_in_another_thread_is_safe(embedder):
    # The pipeline's reader thread chunks (counts tokens) while the main thread embeds; a shared fast tokenizer
    # used to fail with "Unable to create tensor ... expected sequence of length".
    texts = [f"passage {i} " + "word " * (i % 50 + 5) for i in range(64)]
    errors: list[BaseException] = []

    def count() -> None:
        try:
            for _ in range(40):
                assert len(embedder.count_tokens(texts)) == 64
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=count)
    t.start()
    for _ in range(3):
        embedder.embed_documents(texts)
    t.join()
    assert errors == []
