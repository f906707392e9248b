"""Evaluation: BEIR-format datasets, ranking metrics, retrieval runs through a collection, reports."""

from ragworks.evaluate.beir import BeirDataset, DatasetError, load_beir
from ragworks.evaluate.configs import RunConfig, parse_config
from ragworks.evaluate.metrics import evaluate, per_query

__all__ = ["BeirDataset", "DatasetError", "RunConfig", "evaluate", "load_beir", "parse_config", "per_query"]
