"""Wikipedia-scale indexing on one machine: streaming dump ingestion into embedding shards, compressed ANN indexes."""
