"""Retrieval configurations to evaluate, written on the command line as `name[:key=value,...]`.

    bm25                      the collection's BM25 leg (as `ragworks search` runs it: in memory, or FTS5 when big)
    dense                     the collection's dense leg (the configured embedding model)
    hybrid                    both legs fused with the collection's settings (fusion, rrf_k, dense_weight, candidates)
    hybrid-rrf:k=60           reciprocal rank fusion with k = 60
    hybrid-weighted:w=0.5     min-max weighted fusion with dense_weight = 0.5
    bm25s:k1=1.2,b=0.75       reference: bm25s (Lucene BM25, Snowball English stemming and stopwords) over the
                              BEIR corpus itself, one document = title + " " + text, not through the collection

Every hybrid option also takes `candidates=N` (per-leg candidates before fusion). `bm25` and the hybrids take
`lex=fts5` to force the SQLite FTS5 leg, or `lex=inhouse` (with `k1=`, `b=`) for `ragworks.lexical.bm25.BM25Index`
with those parameters over the collection's chunks (for sweeping k1 and b; not what `ragworks search` runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ragworks.config import FusionMethod, Settings
from ragworks.errors import ConfigError

Kind = Literal["bm25", "dense", "hybrid", "bm25s"]
Lexical = Literal["store", "fts5", "inhouse"]
COLLECTION_KINDS: tuple[Kind, ...] = ("bm25", "dense", "hybrid")
_KEYS = {"k": "rrf_k", "rrf_k": "rrf_k", "w": "dense_weight", "dense_weight": "dense_weight",
         "candidates": "candidates", "k1": "k1", "b": "b", "lex": "lexical"}


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One way of retrieving: which legs, how they are fused, and with what parameters."""

    name: str
    kind: Kind
    fusion: FusionMethod = "rrf"
    rrf_k: int = 60
    dense_weight: float = 0.5
    candidates: int = 100
    k1: float = 1.2
    b: float = 0.75
    lexical: Lexical = "store"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lexical_leg(self) -> str:
        """The name of the lexical leg this configuration fuses (see `LegCache`)."""
        if self.lexical == "inhouse":
            return f"inhouse:k1={self.k1:g},b={self.b:g}"
        return "bm25" if self.lexical == "store" else "fts5"

    @property
    def legs(self) -> tuple[str, ...]:
        if self.kind == "hybrid":
            return ("dense", self.lexical_leg)
        if self.kind == "bm25":
            return (self.lexical_leg,)
        return ("dense",) if self.kind == "dense" else ()

    @property
    def uses_collection(self) -> bool:
        return self.kind in COLLECTION_KINDS

    @property
    def mode(self) -> Literal["bm25", "dense", "hybrid"]:
        if self.kind == "bm25s":
            return "bm25"
        return self.kind

    def params(self) -> dict[str, Any]:
        """The parameters that matter for this kind (for reports)."""
        p: dict[str, Any] = {}
        if self.kind == "hybrid":
            p = {"fusion": self.fusion, "candidates": self.candidates}
            p.update({"rrf_k": self.rrf_k} if self.fusion == "rrf" else {"dense_weight": self.dense_weight})
        if self.kind in ("bm25", "hybrid"):
            p["lexical"] = self.lexical
        if self.kind == "bm25s" or self.lexical == "inhouse":
            p.update({"k1": self.k1, "b": self.b})
        return p

    def settings_for(self, base: Settings) -> Settings:
        """`base` with this configuration's retrieval settings, for `Collection.search`."""
        return base.model_copy(update={
            "search_mode": self.mode, "fusion": self.fusion, "rrf_k": self.rrf_k,
            "dense_weight": self.dense_weight, "candidates": self.candidates,
        })


def hybrid(fusion: FusionMethod, *, rrf_k: int = 60, dense_weight: float = 0.5, candidates: int = 100,
           lexical: Lexical = "store", k1: float = 1.2, b: float = 0.75, name: str | None = None) -> RunConfig:
    """A hybrid configuration named after its parameters (`hybrid-rrf:k=60,candidates=100`)."""
    if name is None:
        detail = f"k={rrf_k}" if fusion == "rrf" else f"w={dense_weight:g}"
        lex = {"store": "", "fts5": ",lex=fts5"}.get(lexical, f",lex=inhouse,k1={k1:g},b={b:g}")
        name = f"hybrid-{fusion}:{detail},candidates={candidates}{lex}"
    return RunConfig(name, "hybrid", fusion=fusion, rrf_k=rrf_k, dense_weight=dense_weight, candidates=candidates,
                     lexical=lexical, k1=k1, b=b)


def parse_config(spec: str, settings: Settings | None = None) -> RunConfig:
    """'hybrid-weighted:w=0.6,candidates=200' → RunConfig; defaults come from `settings` (the collection's)."""
    s = settings or Settings()
    head, _, tail = spec.strip().partition(":")
    opts: dict[str, Any] = {"fusion": s.fusion, "rrf_k": s.rrf_k, "dense_weight": s.dense_weight,
                            "candidates": s.candidates, "k1": 1.2, "b": 0.75, "lexical": "store"}
    for item in filter(None, (t.strip() for t in tail.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in _KEYS:
            raise ConfigError(f"config {spec!r}: unknown option {item!r} (options: k, w, candidates, k1, b, lex)")
        field_name = _KEYS[key.strip()]
        if field_name == "lexical":
            if value.strip() not in ("store", "fts5", "inhouse"):
                raise ConfigError(f"config {spec!r}: lex must be store, fts5 or inhouse, got {value!r}")
            opts["lexical"] = value.strip()
            continue
        try:
            opts[field_name] = int(value) if field_name in ("rrf_k", "candidates") else float(value)
        except ValueError:
            raise ConfigError(f"config {spec!r}: {key.strip()} must be a number, got {value!r}") from None
    if not 0.0 <= opts["dense_weight"] <= 1.0:
        raise ConfigError(f"config {spec!r}: w must be between 0 and 1")
    if opts["candidates"] < 1 or opts["rrf_k"] < 0:
        raise ConfigError(f"config {spec!r}: candidates must be ≥ 1 and k ≥ 0")
    kinds: dict[str, tuple[Kind, FusionMethod | None]] = {
        "bm25": ("bm25", None), "dense": ("dense", None), "hybrid": ("hybrid", None),
        "hybrid-rrf": ("hybrid", "rrf"), "hybrid-weighted": ("hybrid", "weighted"), "bm25s": ("bm25s", None),
    }
    if head not in kinds:
        raise ConfigError(f"unknown config {head!r} (use one of {', '.join(kinds)}, options after ':')")
    kind, fusion = kinds[head]
    if opts["lexical"] != "store" and kind not in ("bm25", "hybrid"):
        raise ConfigError(f"config {spec!r}: lex={opts['lexical']} applies to bm25 and hybrid configurations only")
    if fusion is not None:
        opts["fusion"] = fusion
    return RunConfig(name=spec.strip(), kind=kind, **opts)
