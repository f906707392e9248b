"""Ingestion: loaders (one per format), the structure-aware chunker, and the batched, resumable pipeline."""
