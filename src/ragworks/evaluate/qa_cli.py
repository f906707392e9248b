"""`ragworks eval qa DATA`: answer quality per configuration (JSON + Markdown + PNG), and abstention tuning."""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ragworks.config import Settings
from ragworks.errors import ConfigError, DocumentNotFound
from ragworks.evaluate.cli import eval_app

out = Console()
err = Console(stderr=True)

QA_TABLE = (("f1", "F1"), ("exact_match", "EM"), ("rouge_l", "ROUGE-L"), ("bleu", "BLEU"),
            ("contains_gold", "has gold"), ("hit@k", "hit@k"), ("citation_precision", "cite P"),
            ("citation_recall", "cite R"), ("abstention_recall", "abstain (unans.)"),
            ("false_abstention", "false abstain"), ("unsupported_rate", "unsupported"),
            ("draft_unsupported_rate", "draft unsupp."), ("s_per_answer", "s/answer"), ("tokens_per_s", "tok/s"))


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(report: Mapping[str, Any]) -> str:
    head = ["config", "questions", *(label for _, label in QA_TABLE)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for c in report["configs"]:
        m = c["metrics"]
        lines.append("| " + " | ".join([f"`{c['name']}`", f"{m['answerable']}+{m['unanswerable']}",
                                         *(_fmt(m.get(k)) for k, _ in QA_TABLE)]) + " |")
    return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], path: Path) -> Path:
    """Configurations side by side: quality/grounding rates (bars) and seconds per answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = ["f1", "contains_gold", "citation_precision", "citation_recall", "abstention_recall", "false_abstention",
            "unsupported_rate"]
    configs = report["configs"]
    fig, (ax, tax) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [3.2, 1]})
    width = 0.8 / max(1, len(configs))
    x = np.arange(len(keys))
    for i, c in enumerate(configs):
        vals = [c["metrics"].get(k) or 0.0 for k in keys]
        bars = ax.bar(x + i * width, vals, width, label=c["name"])
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(x + width * (len(configs) - 1) / 2, [k.replace("_", " ") for k in keys], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_title(f"{report['dataset']} · {report['questions']} questions")
    ax.legend(fontsize=8)
    secs = [c["metrics"].get("s_per_answer") or 0.0 for c in configs]
    bars = tax.barh([c["name"] for c in configs], secs, color="#C44E52")
    tax.bar_label(bars, fmt="%.2f s", fontsize=8)
    tax.set_xlabel("seconds per answer (2 shared cores)")
    tax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: Mapping[str, Any], out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md"]
    paths[0].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[1].write_text(f"{report.get('command', '')}\n\n{markdown(report)}", encoding="utf-8")
    paths.append(plot(report, out_dir / f"{stem}.png"))
    return paths


def print_table(report: Mapping[str, Any]) -> None:
    table = Table(title=f"{report['dataset']} · {report['questions']} questions", show_edge=False)
    table.add_column("config")
    for _, label in QA_TABLE:
        table.add_column(label, justify="right")
    for c in report["configs"]:
        table.add_row(c["name"], *(_fmt(c["metrics"].get(k)) for k, _ in QA_TABLE))
    out.print(table)


def run_qa(data: Path, *, configs: Sequence[str], base: Mapping[str, Any], collection: str | None,
           data_dir: Path | None, sample: int | None, seed: int, held_out: float, articles: str,
           tune_abstention: bool, max_false_abstention: float, keep_records: bool = True,
           embedder: Any = None) -> dict[str, Any]:
    """Ingest the dataset's contexts, ask every question per configuration, score (and tune abstention)."""
    from ragworks.collection import Collection
    from ragworks.evaluate.qa import apply_policy, ask_all, load_dataset, parse_config, score, select
    from ragworks.generate.abstain import fit_policy, policy_path, save_policy

    parsed = [parse_config(c) for c in configs]
    if len({n for n, _ in parsed}) != len(parsed):
        raise ConfigError("the same --llm configuration is given twice (add name=… to tell them apart)")
    dataset = load_dataset(data, articles=articles)
    items, docs, held = select(dataset, sample=sample, seed=seed, held_out_fraction=held_out)
    if not items:
        raise ConfigError(f"{data}: no questions to ask (check --articles / --sample)")
    scratch = None
    if collection is None:
        scratch = Path(tempfile.mkdtemp(prefix="ragworks-qa-"))
        data_dir, collection = scratch, "qa"
    report: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": platform.platform(), "dataset": data.name,
        "articles": articles, "questions": len(items), "seed": seed, "sample": sample,
        "held_out_fraction": held_out, "documents": len(docs), "configs": [],
    }
    try:
        for name, overrides in parsed:
            settings_kwargs = {**base, **overrides, "collection": collection}
            if data_dir is not None:
                settings_kwargs["data_dir"] = data_dir
            if tune_abstention:
                settings_kwargs["abstention"] = "off"  # collect the evidence; the fitted policy decides below
            settings = Settings(**settings_kwargs)
            with Collection.open(settings=settings, embedder=embedder) as col:
                if docs:
                    err.print(f"[dim]{name}: ingesting {len(docs)} passages (unchanged ones are skipped)…[/]")
                    col.add_documents(docs)
                for article in held:  # a reused collection may hold them from an earlier run
                    with contextlib.suppress(DocumentNotFound):
                        col.delete(f"{article}#*")
                embedder = col.embedder
                model = col.llm.name if col.llm is not None else "extractive"
                with Progress(TextColumn(f"[bold]{name}[/]"), BarColumn(), MofNCompleteColumn(),
                              TimeRemainingColumn(), console=err) as progress:
                    task = progress.add_task(name, total=len(items))

                    def advance(i: int, task: Any = task) -> None:
                        progress.update(task, completed=i)

                    records = ask_all(col, items, advance)
                entry: dict[str, Any] = {"name": name, "settings": overrides, "model": model}
                if tune_abstention:
                    policy = fit_policy([r["evidence"] for r in records], [not r["unanswerable"] for r in records],
                                        max_false_abstention=max_false_abstention,
                                        fitted_on=f"{data.name} ({articles} articles, {len(items)} questions, "
                                                  f"seed {seed}, {name})")
                    records = apply_policy(records, policy)
                    entry["abstention_policy"] = policy.to_dict()
                    entry["policy_file"] = str(save_policy(policy_path(col.path), policy, model=model))
                entry["metrics"] = score(records)
                if keep_records:
                    entry["records"] = records
                report["configs"].append(entry)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


@eval_app.command("qa")
def qa(
    data: Annotated[Path, typer.Argument(help="SQuAD JSON (v1.1 / v2.0) or JSONL: question, answers, "
                                              "optional unanswerable, gold_sources, context.")],
    llm: Annotated[list[str] | None, typer.Option(
        "--llm", help="A configuration: extractive | local | openai | … with optional Settings overrides, e.g. "
                      "'local,grounding=strict,name=local-strict' (repeatable).")] = None,
    sample: Annotated[int | None, typer.Option(help="Ask N questions drawn with --seed.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the sample and the held-out articles.")] = 0,
    held_out: Annotated[float, typer.Option(
        "--unanswerable-from-held-out-articles", help="Leave this FRACTION of the articles out of the collection: "
        "their questions become unanswerable (that share of a --sample).")] = 0.0,
    articles: Annotated[str, typer.Option(help="all | dev | test: a fixed third of SQuAD articles is 'dev' (tune "
                                                "there), the rest 'test'.")] = "all",
    tune_abstention: Annotated[bool, typer.Option(
        "--tune-abstention", help="Fit the abstention policy on these questions (dev data, never test) and store "
        "it in the collection's answering.json (and the report).")] = False,
    max_false_abstention: Annotated[float, typer.Option(help="Tuning: the most answerable questions the policy "
                                                             "may refuse.")] = 0.08,
    abstention_policy: Annotated[Path | None, typer.Option(help="Answer with this policy file (answering.json "
                                                                "or a tuning report's policy).")] = None,
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="Ingest into / answer from this "
                                                   "collection (default: a throw-away one).")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where named collections live.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the JSON, Markdown and PNG go.")] = Path("eval-qa"),
    stem: Annotated[str, typer.Option(help="File name stem of the reports.")] = "qa",
    threads: Annotated[int, typer.Option(help="torch/FAISS threads while evaluating (0: library defaults).")] = 1,
) -> None:
    """Ask every question through `Collection.ask` per configuration and score the answers."""
    from ragworks.evaluate.retrieval import set_threads

    set_threads(threads)
    if tune_abstention and articles == "test":
        raise ConfigError("tune abstention on dev data (--articles dev); the test articles are for reporting")
    base: dict[str, Any] = {}
    if abstention_policy is not None:
        base["abstention_policy"] = abstention_policy
    report = run_qa(data, configs=llm or ["extractive"], base=base, collection=collection, data_dir=data_dir,
                    sample=sample, seed=seed, held_out=held_out, articles=articles,
                    tune_abstention=tune_abstention, max_false_abstention=max_false_abstention)
    import shlex
    import sys

    report["command"] = "ragworks eval qa " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    print_table(report)
    paths = write_report(report, out_dir, stem)
    err.print(f"[dim]wrote {', '.join(str(p) for p in paths)}[/]")
