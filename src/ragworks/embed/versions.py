"""Tuned model versions kept beside a collection: `<collection>/models/<version>/` with its `card.json`.

A version directory is a complete sentence-transformers model (loadable as `embed_model`), so the store names it
like any local model (`st:<version>`). The card records what it was trained on, how, and how it scored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ragworks.config import Settings
from ragworks.embed import embedder_name

MODELS_DIR = "models"
CARD = "card.json"


def models_dir(collection_path: Path) -> Path:
    return Path(collection_path) / MODELS_DIR


def new_version(collection_path: Path) -> str:
    """A fresh version name: `tuned-<UTC time>` (unique per collection, so unique in its `models` table)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    name, n = f"tuned-{stamp}", 1
    while (models_dir(collection_path) / name).exists():
        n += 1
        name = f"tuned-{stamp}-{n}"
    return name


def settings_for_model(settings: Settings, model_dir: Path | str) -> Settings:
    """`settings` with `model_dir` as the (local) embedding model; prefixes and batching unchanged."""
    return settings.model_copy(update={"embed_provider": "local", "embed_model": str(model_dir)})


def model_name(settings: Settings, model_dir: Path | str) -> str:
    """The name the store records for vectors of the model in `model_dir` (as `make_embedder` names it)."""
    return embedder_name(settings_for_model(settings, model_dir))


def read_card(version_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((version_dir / CARD).read_text()))
    except (OSError, ValueError):
        return {}


def write_card(version_dir: Path, card: dict[str, Any]) -> None:
    """Write `card.json` atomically (temp file + rename): a kill leaves the old card or the new one."""
    tmp = version_dir / f".{CARD}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, version_dir / CARD)


def versions(collection_path: Path) -> list[Path]:
    """Complete version directories (those with a card), oldest first."""
    root = models_dir(collection_path)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and (p / CARD).is_file()), key=lambda p: p.name)


def settings_for_name(collection_path: Path, settings: Settings, name: str) -> Settings | None:
    """Settings whose embedder produces the collection's vectors named `name`, or None if unknown here.

    `name` is a tuned version of this collection, the base model a version was trained from, or the configured one.
    """
    if settings.embed_provider == "local" and embedder_name(settings) == name:
        return settings
    for vdir in versions(collection_path):
        if model_name(settings, vdir) == name:
            return settings_for_model(settings, vdir)
        base = read_card(vdir).get("base", {})
        if base.get("name") == name and base.get("embed_model"):
            return settings_for_model(settings, base["embed_model"])
    return None


def active_model_settings(collection_path: Path, settings: Settings, active_name: str) -> Settings:
    """The settings to open a collection with: its active tuned model when `settings` name that model's base.

    So `ragworks search` with default settings uses the tuned model after `ragworks tune` switched to it, and the
    base model again after `--rollback`; any other configured model is left as is (and refused as a mismatch).
    The tuned model's fusion weight (chosen on dev queries, card "fusion") comes along unless `dense_weight` was
    set explicitly (argument, environment or ragworks.toml).
    """
    if settings.embed_provider != "local" or embedder_name(settings) == active_name:
        return settings
    for vdir in versions(collection_path):
        if model_name(settings, vdir) == active_name:
            card = read_card(vdir)
            base = card.get("base", {})
            # root_name: the configured model a chain of tunes started from (a version tuned from a version)
            if embedder_name(settings) in (base.get("name"), base.get("root_name")):
                tuned = settings_for_model(settings, vdir)
                weight = (card.get("fusion") or {}).get("dense_weight")
                if weight is not None and "dense_weight" not in settings.model_fields_set:
                    tuned = tuned.model_copy(update={"dense_weight": float(weight)})
                return tuned
    return settings
