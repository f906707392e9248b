"""Dump ingestion: JSONL/Parquet dumps streamed into embedding shards (in-process, pipelined or fanned out to Celery
workers), then built into a collection with a compressed ANN index (store/ann.py plans it)."""
