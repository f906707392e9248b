"""From retrieved hits to a cited Answer, streaming the text as the LLM produces it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragworks.documents import Answer, Citation, SearchHit
from ragworks.embed.base import Embedder
from ragworks.generate.abstain import AbstentionPolicy, decide, retrieval_evidence
from ragworks.generate.base import LLM
from ragworks.generate.citations import citation_for, resolve_citations, strip_invalid_markers
from ragworks.generate.extractive import extract_answer, extract_answer_by_step
from ragworks.generate.prompt import NO_ANSWER, build_messages, pack_sources
from ragworks.generate.verify import SUPPORT_THRESHOLD, Grounding, Verification, addresses, verify_answer
from ragworks.guard.base import InjectionPolicy
from ragworks.guard.injection import check_answer, new_canary
from ragworks.guard.output import PiiMasker, flagged_stretches, trusted_text

EXTRACTIVE_NOTICE = "no LLM configured: the answer is the best-matching source sentences (extractive)"
DEGENERATE_NOTICE = "the LLM's answer degenerated into repetition and was replaced by the extractive answer"
DECLINED_NOTICE = ("the model gave no supported answer although the passages match the question well: "
                   "the answer is the best-matching source sentences (extractive)")
OFF_TOPIC_NOTICE = ("the model's answer shares no word with the question although the passages match it well: "
                    "the answer is the best-matching source sentences (extractive)")
RESCUE_MIN_P = 0.9  # P(answerable) needed to overrule a model's decline
GUARD_NOTICE = "the answer was withheld: it carried what a prompt injection asks for (see guard.injection)"
ABSTAIN_NOTICE = ("the retrieved passages do not appear to contain the answer "
                  "(abstained, P(answerable) {p:.2f} < {t:.2f})")


def is_degenerate(text: str, *, min_words: int = 40, min_unique_ratio: float = 0.45) -> bool:
    """True when generated text loops: few distinct word trigrams among many (small models do this)."""
    words = text.lower().split()
    if len(words) < min_words:
        return False
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    return len(set(trigrams)) / len(trigrams) < min_unique_ratio


@dataclass
class AnswerOptions:
    max_answer_tokens: int = 320
    temperature: float = 0.1
    context_budget_tokens: int = 1500
    max_sources: int = 6  # small models answer better from fewer passages
    grounding: Grounding = "flag"  # off | flag (mark unsupported sentences) | strict (drop them)
    support_threshold: float = SUPPORT_THRESHOLD
    abstention: AbstentionPolicy | None = field(default=None)  # None: never abstain on evidence
    injection: InjectionPolicy = "off"  # guard/: what flagged passages and attack-serving answers get
    pii_masker: PiiMasker | None = None  # set: the caller lacks pii:read, so PII in the output is masked


class AnswerStream:
    """Iterate to receive the answer's text pieces; `answer` is complete once iteration ends.

    `sources` (the numbered passages given to the model) are known before the first piece.
    """

    def __init__(self, question: str, hits: list[SearchHit], llm: LLM | None, embedder: Embedder,
                 options: AnswerOptions, *, steps: list[dict[str, Any]] | None = None) -> None:
        self.question = question
        self.steps = steps or []  # multi-step retrieval's log, carried onto the Answer
        self.llm = llm
        self.embedder = embedder
        self.options = options
        policy = options.injection
        if policy == "quarantine":  # flagged passages never reach a prompt; the next ones take their places
            hits = [h for h in hits if not flagged_stretches(h)]
        if llm is None:
            self.sources = hits[: max(5, len({h.step for h in hits}))]
        else:
            budget = min(options.context_budget_tokens,
                         llm.context_tokens - options.max_answer_tokens - 300)  # system prompt and question
            self.sources = pack_sources(hits[: options.max_sources], max(budget, 200), llm.count_tokens)
        self.flagged = {n: f for n, h in enumerate(self.sources, 1) if (f := flagged_stretches(h))} \
            if policy != "off" else {}
        # fence: instruction-like stretches are withheld from the answerer (the LLM sees a marker, the extractive
        # answerer never picks those sentences)
        self.withheld = self.flagged if policy == "fence" else {}
        self.canary = new_canary() if policy != "off" and llm is not None else ""
        # Held back until checked: an answer from a flagged passage (its markdown image would be fetched by a
        # client rendering the stream) and any answer whose PII must be masked. Clean answers stream as made.
        self.hold = options.pii_masker is not None or (bool(self.flagged) and policy != "flag")
        self.answer: Answer | None = None
        self.on_complete: Callable[[Answer], None] | None = None  # called once the answer is complete (the cache)
        self._replayed = False

    @classmethod
    def replay(cls, answer: Answer) -> AnswerStream:
        """A finished stream that yields `answer`'s text as one piece (what a result-cache hit returns), with the
        same `sources`, `answer` and `result()` as the stream that produced it."""
        stream = cls.__new__(cls)
        stream.question, stream.llm, stream.sources, stream.answer = answer.question, None, answer.sources, answer
        stream.embedder = None  # type: ignore[assignment]  # nothing left to embed
        stream.options = None  # type: ignore[assignment]
        stream.on_complete, stream._replayed = None, True
        return stream

    @property
    def shown_sources(self) -> list[SearchHit]:
        """The sources as they may be shown to this caller before the answer (masked when it lacks pii:read)."""
        masker = self.options.pii_masker if self.options is not None else None  # a replay's sources are as shown
        return [masker.hit(h) for h in self.sources] if masker is not None else self.sources

    def __iter__(self) -> Iterator[str]:
        if self._replayed and self.answer is not None:
            yield self.answer.text
            return
        for piece in self._generate():
            if not self.hold:
                yield piece
        assert self.answer is not None
        self.answer = self._guard(self.answer)
        if self.hold:
            yield self.answer.text
        if self.on_complete is not None:  # not when the reader stopped early
            self.on_complete(self.answer)

    def _guard(self, answer: Answer) -> Answer:
        """The output check (what an attack wants: the canary, images, links and URLs from no trusted passage),
        then PII masking for callers without pii:read."""
        policy = self.options.injection
        if policy != "off":
            reasons = check_answer(answer.text, trusted_text(self.sources, self.flagged), canary=self.canary)
            replaced = bool(reasons) and policy != "flag"
            answer.guard = {"injection": {"policy": policy, "flagged_sources": sorted(self.flagged),
                                          "output_flags": reasons, "replaced": replaced}}
            if replaced:
                answer.abstention = {**answer.abstention, "draft": answer.text}
                answer.text, answer.citations, answer.sentences = NO_ANSWER, [], []
                answer.abstained = True
                answer.notice = "; ".join(n for n in (answer.notice, GUARD_NOTICE) if n)
        if self.options.pii_masker is not None:
            answer = self.options.pii_masker.answer(answer)
        return answer

    def _generate(self) -> Iterator[str]:
        model = self.llm.name if self.llm else "extractive"
        if not self.sources:
            self.answer = Answer(self.question, NO_ANSWER, [], [], model, abstained=True, steps=self.steps,
                                 notice="nothing in the collection matched the question")
            yield NO_ANSWER
            return
        evidence = retrieval_evidence(self.question, self.sources)
        policy = self.options.abstention
        if policy is not None:
            early = decide(policy, evidence, stage="retrieval")
            if early["abstain"]:  # even a fully supported draft would not clear the threshold: skip generating
                self.answer = Answer(self.question, NO_ANSWER, [], self.sources, model, abstained=True,
                                     steps=self.steps,
                                     abstention=early,
                                     notice=ABSTAIN_NOTICE.format(p=early["p_answerable"], t=policy.threshold))
                yield NO_ANSWER
                return
        started = time.perf_counter()
        tokens = 0
        dropped: list[int] = []
        notices: list[str] = []
        if self.llm is None:
            text, citations = self._extract()
            notices.append(EXTRACTIVE_NOTICE)
            yield text
        else:
            pieces: list[str] = []
            messages = build_messages(self.question, self.sources, canary=self.canary, withheld=self.withheld)
            for piece in self.llm.stream(messages,
                                         max_tokens=self.options.max_answer_tokens,
                                         temperature=self.options.temperature):
                pieces.append(piece)
                yield piece
                if len(pieces) % 16 == 0 and is_degenerate("".join(pieces)):
                    break  # stop paying for a loop
            raw = "".join(pieces).strip()
            tokens = self.llm.count_tokens(raw) if raw else 0
            if is_degenerate(raw):
                text, citations = self._extract()
                yield "\n\n[extractive answer] " + text
                notices.append(DEGENERATE_NOTICE)
            else:
                citations, dropped = resolve_citations(raw, self.sources)
                text = strip_invalid_markers(raw, len(self.sources)) if dropped else raw
                if dropped:
                    notices.append("dropped citation(s) to sources that were not given: "
                                   + ", ".join(f"[{n}]" for n in dropped))
        generation_s = time.perf_counter() - started
        self.answer = self._finish(text, citations, model, dropped, notices, evidence, tokens, generation_s)

    def _extract(self) -> tuple[str, list[Citation]]:
        """The extractive answer; after multi-step retrieval, one from each step's passages."""
        if len({h.step for h in self.sources}) > 1:
            queries = {int(st["step"]): str(st["query"]) for st in self.steps}
            return extract_answer_by_step(self.question, self.sources, self.embedder, queries=queries,
                                          withheld=self.withheld)
        return extract_answer(self.question, self.sources, self.embedder, withheld=self.withheld)

    def _finish(self, text: str, citations: list[Citation], model: str, dropped: list[int], notices: list[str],
                evidence: dict[str, float | None], tokens: int, generation_s: float) -> Answer:
        """Verify the draft claim by claim, then let the abstention policy judge the whole of it."""
        declined = NO_ANSWER.lower().rstrip(".") in text.lower()
        policy = self.options.abstention
        sentences = []
        if self.options.grounding != "off":
            v = verify_answer(text, self.sources, self.embedder, grounding=self.options.grounding,
                              threshold=self.options.support_threshold, question=self.question)
            off_topic = not declined and v.text != NO_ANSWER and not addresses(self.question, v)
            if (declined or v.text == NO_ANSWER or off_topic) and self.llm is not None and policy is not None:
                # the model declined, strict grounding left nothing, or what is left is true but answers another
                # question (a small model quoting the wrong passage): is an extractive answer clearly better?
                rescued = self._rescue_decline(policy, evidence)
                if rescued is not None:
                    notices.append(OFF_TOPIC_NOTICE if off_topic else DECLINED_NOTICE)
                    text, v, declined = rescued[0], rescued[1], False
            if v.text != text and v.unsupported and self.options.grounding == "strict":
                notices.append(f"dropped {v.unsupported} sentence(s) no given source supports (strict grounding)")
            elif v.unsupported:
                notices.append(f"{v.unsupported} sentence(s) not supported by the given sources")
            if any(s.status == "reattributed" for s in v.sentences):
                notices.append("citation(s) moved to the source that supports the sentence")
            text, citations, sentences = v.text, v.citations, v.sentences
            evidence["answer_support"] = 0.0 if declined else v.mean_support
        elif not citations and not declined:
            citations = self._attribute(text)
            if citations:
                notices.append("the model cited no source: sources matched to the answer by similarity")
        decision: dict[str, Any] = {"abstain": False, "stage": "off", "evidence": evidence}  # evidence kept for tuning
        abstained = declined or text.strip() == NO_ANSWER
        if abstained:
            decision = {"abstain": True, "stage": "answerer", "evidence": evidence}
        elif policy is not None and "answer_support" in evidence:
            decision = decide(policy, evidence, stage="answer")
            if decision["abstain"]:
                notices.append(ABSTAIN_NOTICE.format(p=decision["p_answerable"], t=policy.threshold))
                decision["draft"] = text
                text, citations, sentences, abstained = NO_ANSWER, [], [], True
        return Answer(self.question, text, citations, self.sources, model, dropped, "; ".join(notices),
                      sentences=sentences, abstained=abstained, abstention=decision,
                      generated_tokens=tokens, generation_s=generation_s, steps=self.steps)

    def _rescue_decline(self, policy: AbstentionPolicy, evidence: dict[str, float | None]
                        ) -> tuple[str, Verification] | None:
        """Small models decline questions their top passage answers: when the evidence for an extractive answer is
        confidently above the policy's threshold, answer extractively instead (None: the decline stands)."""
        text, _ = self._extract()
        if text == NO_ANSWER:
            return None
        v = verify_answer(text, self.sources, self.embedder, grounding=self.options.grounding,
                          threshold=self.options.support_threshold, question=self.question)
        p = policy.probability({**evidence, "answer_support": v.mean_support})
        return (text, v) if p >= max(policy.threshold, RESCUE_MIN_P) and v.text != NO_ANSWER else None

    def _attribute(self, text: str, threshold: float = 0.5) -> list[Citation]:
        """Sources whose passage is close to the answer text: a fallback for models that forget [n] markers."""
        if not text.strip():
            return []
        vecs = self.embedder.embed_documents([text] + [h.chunk.text for h in self.sources])
        sims = vecs[1:] @ vecs[0]
        return [citation_for(int(i) + 1, self.sources[int(i)]) for i in np.argsort(-sims)[:2]
                if sims[int(i)] >= threshold]

    def result(self) -> Answer:
        """Consume the stream (if not yet) and return the answer."""
        if self.answer is None:
            for _ in self:
                pass
        assert self.answer is not None
        return self.answer
