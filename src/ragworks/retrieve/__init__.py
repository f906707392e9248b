"""Retrieval: dense, BM25 and hybrid fusion; reranker protocol."""
