"""Answer quality on SQuAD v1.1 dev, every answerer side by side (table + bench/results/answers.{json,md,png}).

Two stages, both through `ragworks eval qa`'s own code (`run_qa`, i.e. `Collection.ask` per question):
  1. tune: on the *dev* third of the articles (a fixed hash split), each configuration answers a sample with a
     third of its questions made unanswerable (their articles held out), and an abstention policy is fitted per
     answerer; the policies land in that collection's answering.json.
  2. test: on the other two thirds, `--questions` answerable + half as many unanswerable questions (held-out
     articles), answered with the policies from stage 1 (never fitted on these questions).

    python bench/answers.py                              # 300 + 150 test questions, extractive and SmolLM2
    python bench/answers.py --questions 60 --dev 60      # a quick look
    python bench/answers.py --llm extractive --llm 'local,llm_gguf=qwen2.5-1.5b,name=qwen'   # another model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository (a worktree sits one level deeper)
SHARED = Path(os.environ.get("RAGWORKS_SHARED_DATA") or next(
    (p / "shared" / "data" for p in (REPO.parent, REPO.parent.parent) if (p / "shared" / "data").is_dir()),
    REPO.parent / "shared" / "data"))
SQUAD = SHARED / "squad-dev" / "dev-v1.1.json"
DEFAULT_CONFIGS = ["extractive", "local,name=local-smollm2", "local,grounding=strict,name=local-smollm2-strict"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SQUAD)
    ap.add_argument("--llm", action="append", help="configurations (as `ragworks eval qa --llm`)")
    ap.add_argument("--questions", type=int, default=300, help="answerable test questions (plus half as many "
                                                                "unanswerable)")
    ap.add_argument("--dev", type=int, default=120, help="dev questions for tuning (a third unanswerable)")
    ap.add_argument("--tune-llm", action="append", help="configurations tuned in stage 1 (default: all); the others "
                                                         "answer with the last policy tuned")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ragworks-bench-answers"),
                    help="collections (reused across runs: ingestion is skipped when unchanged)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--stem", default="answers")
    args = ap.parse_args()

    from ragworks.evaluate.qa_cli import print_table, run_qa, write_report
    from ragworks.evaluate.retrieval import set_threads
    from ragworks.generate.abstain import policy_path

    set_threads(1)  # a shared 2-core machine: one thread per process contends least (see evaluate/retrieval.py)
    configs = args.llm or DEFAULT_CONFIGS
    dev_col = args.work / "squad-dev-articles"
    started = time.time()
    tuned = run_qa(args.data, configs=args.tune_llm or configs, base={}, collection=str(dev_col), data_dir=None,
                   sample=args.dev, seed=args.seed, held_out=1 / 3, articles="dev", tune_abstention=True,
                   max_false_abstention=0.08, keep_records=False)
    tune_s = time.time() - started
    print_table(tuned)
    total = args.questions + args.questions // 2
    started = time.time()
    report = run_qa(args.data, configs=configs, base={"abstention_policy": policy_path(dev_col)},
                    collection=str(args.work / "squad-test-articles"), data_dir=None, sample=total,
                    seed=args.seed, held_out=1 / 3, articles="test", tune_abstention=False,
                    max_false_abstention=0.08)
    report["tuning"] = {"articles": "dev", "questions": tuned["questions"], "seconds": round(tune_s, 1),
                        "configs": [{"name": c["name"], "metrics": c["metrics"],
                                     "abstention_policy": c.get("abstention_policy")} for c in tuned["configs"]]}
    report["seconds"] = round(time.time() - started, 1)
    report["command"] = "python bench/answers.py " + " ".join(sys.argv[1:])
    print_table(report)
    paths = write_report(report, args.out, args.stem)
    print("wrote", ", ".join(str(p) for p in paths))
    print(json.dumps({c["name"]: c["metrics"] for c in report["configs"]}, indent=1))


if __name__ == "__main__":
    main()
