"""Stores: the Store protocol and the embedded SQLite + FTS5 + FAISS implementation."""
