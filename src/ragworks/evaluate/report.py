"""Evaluation reports: JSON (everything), a Markdown table, and a PNG (nDCG@10 bars, Recall@k curves).

Reports take the plain dicts of `DatasetResult.to_dict()`, so a JSON file written earlier can be re-rendered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TABLE_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(datasets: Sequence[Mapping[str, Any]], *, metrics: Sequence[str] = TABLE_METRICS,
                   anchors: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """One row per (dataset, configuration): metrics, search latency (wall and CPU), and a published anchor."""
    anchors = anchors or {}
    head = ["dataset", "config", *metrics, "p50 ms", "p95 ms", "CPU p50 ms", "CPU p95 ms"]
    with_anchor = any(anchors.get(d["name"]) for d in datasets)
    if with_anchor:
        head.append("published nDCG@10")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for d in datasets:
        for c in d["configs"]:
            lat = c.get("latency") or {}
            row = [d["label"], f"`{c['name']}`", *(_fmt(c["metrics"].get(m)) for m in metrics),
                   *(_fmt(lat.get(k), 1) for k in ("p50_ms", "p95_ms", "cpu_p50_ms", "cpu_p95_ms"))]
            if with_anchor:
                row.append(anchors.get(d["name"], {}).get(c["name"], ""))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(datasets: Sequence[Mapping[str, Any]], path: Path, *, title: str = "Retrieval quality") -> Path:
    """PNG with, per dataset, a bar chart of nDCG@10 per configuration and its Recall@k curves."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    n = len(datasets)
    fig, axes = plt.subplots(n, 2, figsize=(15, 4.4 * n), squeeze=False, gridspec_kw={"width_ratios": [1, 1.15]})
    for row, d in enumerate(datasets):
        configs = d["configs"]
        names = [c["name"] for c in configs]
        bars_ax, curve_ax = axes[row]
        values = [c["metrics"].get("ndcg@10", 0.0) for c in configs]
        bars = bars_ax.barh(range(len(names)), values, color="#4C72B0")
        bars_ax.set_yticks(range(len(names)), names, fontsize=8)
        bars_ax.invert_yaxis()
        bars_ax.set_xlabel("nDCG@10")
        bars_ax.set_title(f"{d['label']}\n{d['split']}, {d['queries']} queries: nDCG@10", fontsize=10)
        bars_ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
        bars_ax.set_xlim(0, min(1.0, max(values, default=0.0) * 1.18 + 0.02))
        for c in configs:
            curve = c.get("recall_curve") or {}
            ks = sorted(int(k) for k in curve)
            curve_ax.plot(ks, [curve[str(k)] for k in ks], marker=".", label=c["name"])
        curve_ax.set_xscale("log")
        curve_ax.set_xlabel("k (documents)")
        curve_ax.set_ylabel("Recall@k")
        curve_ax.set_title(f"{d['label']}\nRecall@k", fontsize=10)
        curve_ax.grid(True, alpha=0.3)
        curve_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keep the legends placed outside the axes
    plt.close(fig)
    return path


def write_all(report: Mapping[str, Any], out: Path, *, stem: str = "results",
              anchors: Mapping[str, Mapping[str, str]] | None = None, preface: str = "") -> dict[str, Path]:
    """`<stem>.json`, `<stem>.md` and `<stem>.png` under `out`; returns their paths."""
    datasets = report["datasets"]
    paths = {"json": write_json(report, out / f"{stem}.json")}
    md = out / f"{stem}.md"
    md.write_text((preface + "\n" if preface else "") + markdown_table(datasets, anchors=anchors), encoding="utf-8")
    paths["markdown"] = md
    paths["png"] = plot(datasets, out / f"{stem}.png")
    return paths
