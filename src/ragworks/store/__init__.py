"""Stores: the Store protocol (base.py) and its implementations: embedded (SQLite + FTS5 + FAISS), postgres, qdrant."""
