"""`ragworks tune`: the typer command (registered in ragworks.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ragworks.config import Settings
from ragworks.embed import versions
from ragworks.errors import ConfigError
from ragworks.store.embedded import EmbeddedStore
from ragworks.tune.pairs import NegativeMining
from ragworks.tune.run import TuneOptions, TuneReport, check_supported, run_tune
from ragworks.tune.switch import rollback, switch_to
from ragworks.tune.train import TrainConfig

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class _Bars:
    """One rich bar per stage (negatives, training steps, re-embedding, …) with rate and ETA."""

    def __init__(self) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description:<10}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=err)
        self.tasks: dict[str, Any] = {}

    def stage(self, name: str, done: int, total: int, info: str = "") -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, info=info)
        self.progress.update(self.tasks[name], completed=done, total=total, info=info)

    def step(self, step: int, planned: int, loss: float, mrr: float | None) -> None:
        info = f"loss {loss:.3f}" + (f" · dev MRR {mrr:.3f}" if mrr is not None else "")
        self.stage("train", step, planned, info)


def scores_table(report: TuneReport) -> Table:
    table = Table(title=f"held-out retrieval ({report.card['scores']['queries']} queries)", show_edge=False)
    for col in ("model", "dense nDCG@10", "dense R@100", "hybrid nDCG@10", "hybrid R@100"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for label, s in (("before: " + report.card["base"]["name"], report.before),
                     ("after:  " + report.version, report.after)):
        table.add_row(label, *(f"{s[m][k]:.4f}" for m in ("dense", "hybrid") for k in ("ndcg@10", "recall@100")))
    return table


def versions_table(path: Path, settings: Settings) -> Table:
    store = EmbeddedStore(path, create=False)
    try:
        active = store.model_name
    finally:
        store.close()
    table = Table(title=f"models of {path.name} (active: {active})", show_edge=False)
    for col in ("version", "created", "data", "steps", "dense nDCG@10 before → after", "active"):
        table.add_column(col)
    for vdir in versions.versions(path):
        card = versions.read_card(vdir)
        scores = card.get("scores", {})
        change = ""
        if scores:
            change = f"{scores['before']['dense']['ndcg@10']:.4f} → {scores['after']['dense']['ndcg@10']:.4f}"
        table.add_row(vdir.name, str(card.get("created", "")), str(card.get("data", {}).get("source", "")),
                      str(card.get("training", {}).get("steps", "")), change,
                      "yes" if versions.model_name(settings, vdir) == active else "")
    return table


def tune(
    collection: Annotated[str, typer.Argument(help="Collection name or directory.")],
    beir: Annotated[Path | None, typer.Option("--beir", help="BEIR dir: train on qrels/train.tsv, measure on "
                                                             "qrels/test.tsv.")] = None,
    unlabelled: Annotated[bool, typer.Option(
        "--unlabelled", help="With --beir: ignore its train qrels, make pairs from the corpus, measure on "
                             "qrels/test.tsv.")] = False,
    pairs: Annotated[Path | None, typer.Option("--pairs", help="JSONL of {query, positive[, negative]}.")] = None,
    budget_minutes: Annotated[float, typer.Option("--budget-minutes", help="Training time budget (CPU).")] = 20.0,
    generate: Annotated[int, typer.Option("--generate", help="Without labels: also have the configured LLM "
                                                             "write queries for N passages (doc2query).")] = 0,
    generate_minutes: Annotated[float, typer.Option("--generate-minutes", help="Time cap for --generate.")] = 10.0,
    ict: Annotated[int, typer.Option("--ict", help="With --method finetune and no labels: also N Inverse Cloze Task "
                                                   "pairs (a passage's sentence → the rest of the passage; no gain "
                                                   "measured on SciFact).")] = 0,
    method: Annotated[str, typer.Option(
        "--method", help="auto: without labels distil the hybrid retriever into a linear adapter (seconds of "
                         "training), with labels fine-tune the model; or force adapter / finetune.")] = "auto",
    negatives: Annotated[str, typer.Option("--negatives", help="Hard negatives: bm25, dense, both, none.")] = "bm25",
    epochs: Annotated[int, typer.Option("--epochs", help="At most this many passes over the pairs.")] = 4,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    learning_rate: Annotated[float, typer.Option("--lr")] = 3e-5,
    no_switch: Annotated[bool, typer.Option("--no-switch", help="Train and measure, but keep the old model.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Switch even if the new model measures worse.")] = False,
    do_rollback: Annotated[bool, typer.Option("--rollback", help="Return to the previous model.")] = False,
    switch_to_version: Annotated[str | None, typer.Option(
        "--switch-to", help="Re-embed with a trained VERSION and switch to it (resumes a killed run).")] = None,
    list_versions: Annotated[bool, typer.Option("--list", help="List the tuned versions and their scores.")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where named collections live.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the training card as JSON.")] = False,
) -> None:
    """Fine-tune the collection's embedding model on its data; switch to it atomically if it measures better."""
    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    path = settings.collection_path(collection)
    check_supported(path, settings).close()
    bars = _Bars()
    if list_versions:
        out.print(versions_table(path, settings))
        return
    if switch_to_version is not None:
        model_dir = versions.models_dir(path) / switch_to_version
        if not (model_dir / versions.CARD).is_file():
            raise ConfigError(f"no tuned version {switch_to_version!r} in {versions.models_dir(path)} "
                              "(`ragworks tune COLLECTION --list` shows them)")
        with bars.progress:
            done = switch_to(path, settings, model_dir, progress=bars.stage)
        out.print(f"switched: active model is {done.model_name} ({done.embedded} chunks embedded, {done.seconds} s)")
        return
    if do_rollback:
        with bars.progress:
            back = rollback(path, settings, progress=bars.stage)
        out.print(f"rolled back: active model is {back.model_name} ({back.embedded} chunks embedded, "
                  f"{back.seconds} s)")
        return
    if beir is not None and pairs is not None:
        raise ConfigError("give --beir or --pairs, not both")
    if negatives not in ("bm25", "dense", "both", "none"):
        raise ConfigError(f"--negatives must be bm25, dense, both or none, not {negatives!r}")
    if method not in ("auto", "finetune", "adapter"):
        raise ConfigError(f"--method must be auto, finetune or adapter, not {method!r}")
    mining: NegativeMining = negatives  # type: ignore[assignment]
    options = TuneOptions(beir=beir, unlabelled=unlabelled, pairs=pairs, generate=generate, ict=ict,
                          generate_minutes=generate_minutes, negatives=mining, switch=not no_switch, force=force,
                          method=method,  # type: ignore[arg-type]
                          train=TrainConfig(budget_minutes=budget_minutes, max_epochs=epochs, batch_size=batch_size,
                                            learning_rate=learning_rate))
    with bars.progress:
        report = run_tune(path, settings, options, log=lambda m: bars.progress.console.print(m, highlight=False),
                          progress=bars.stage, step_progress=bars.step)
    if as_json:
        out.print_json(json.dumps(report.card, default=str))
        return
    out.print(scores_table(report))
    t = report.card["training"]
    what = "adapter: " if t.get("method") == "adapter" else ""
    out.print(f"{what}trained {t['steps']} steps ({t['epochs']} epochs, {t['seconds']:.0f} s, "
              f"stopped: {t['stopped']}); "
              f"model and card in {report.model_dir}; loss curve {report.model_dir / 'loss.png'}", highlight=False)
    fusion = report.card.get("fusion") or {}
    if fusion.get("dense_weight") is not None:
        out.print(f"hybrid dense_weight {fusion['dense_weight']:g} (best of {len(fusion['dev_ndcg@10'])} on "
                  f"{fusion['dev_queries']} dev queries), used while this model is active unless dense_weight is "
                  "set", highlight=False)
    out.print(f"{report.decision}" + ("" if report.switched else " (active model unchanged; --force to switch)"))
