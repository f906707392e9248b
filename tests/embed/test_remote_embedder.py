"""The OpenAI-compatible embeddings client (embed/remote.py) against a real endpoint (llama.cpp's server)."""

from __future__ import annotations

import numpy as np

from ragworks.embed.remote import OpenAICompatibleEmbedder


def test_remote_embedder_against_a_real_embeddings_endpoint(embedding_server):
    emb = OpenAICompatibleEmbedder(base_url=embedding_server, model="smollm2", batch_size=2)
    vecs = emb.embed_documents(["lighthouse lens", "fog horn", "tide tables"])
    assert vecs.shape == (3, emb.dimension) and emb.dimension > 0
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    q = emb.embed_queries(["lighthouse lens"])[0]
    assert int(np.argmax(vecs @ q)) == 0
