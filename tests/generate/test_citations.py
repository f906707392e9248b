from ragworks.documents import Chunk, SearchHit
from ragworks.generate.citations import cited_numbers, resolve_citations, strip_invalid_markers
from ragworks.generate.prompt import NO_ANSWER, SYSTEM_PROMPT, build_messages, pack_sources


def _hit(n: int, text: str = "Some passage text.", page: int | None = None) -> SearchHit:
    chunk = Chunk(doc_id=f"d{n}", ordinal=0, text=text, start=10 * n, end=10 * n + len(text),
                  heading_path=("Top", f"Sec {n}"), page_start=page, page_end=page)
    return SearchHit(chunk=chunk, score=1.0 / n, source=f"/docs/file{n}.pdf", title=f"File {n}")


def test_cited_numbers_reads_single_grouped_ranged_and_adjacent_markers():
    assert cited_numbers("A [1]. B [2, 3]. C [4-6]. D [1][7]. E [8; 9]") == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_citation_points_at_document_page_and_offsets_of_the_numbered_source():
    hits = [_hit(1, page=3), _hit(2)]
    citations, dropped = resolve_citations("Claim one [2]. Claim two [1].", hits)
    assert dropped == []
    assert [c.number for c in citations] == [2, 1]
    two, one = citations
    assert (two.doc_id, two.source, two.page, two.start, two.end) == ("d2", "/docs/file2.pdf", None, 20, 38)
    assert one.page == 3 and one.heading_path == ("Top", "Sec 1")


def test_citation_to_a_source_that_was_not_given_is_dropped_and_reported():
    hits = [_hit(1), _hit(2)]
    text = "Real [1]. Invented [7]. Mixed [2, 9]."
    citations, dropped = resolve_citations(text, hits)
    assert [c.number for c in citations] == [1, 2]
    assert dropped == [7, 9]
    assert strip_invalid_markers(text, 2) == "Real [1]. Invented . Mixed [2]."


def test_prompt_numbers_sources_and_asks_for_citations_and_a_plain_no_answer():
    msgs = build_messages("What is X?", [_hit(1, page=2), _hit(2)])
    assert msgs[0]["content"] == SYSTEM_PROMPT and NO_ANSWER in SYSTEM_PROMPT and "[1]" in SYSTEM_PROMPT
    user = msgs[1]["content"]
    assert "[1] File 1 › Top › Sec 1 (page 2)" in user and "[2] File 2" in user
    assert user.rstrip().endswith("Answer with citations:") and "What is X?" in user


def test_packing_keeps_best_ranked_sources_within_the_token_budget():
    hits = [_hit(i, text="word " * 100) for i in range(1, 6)]
    packed = pack_sources(hits, budget_tokens=250, count_tokens=lambda t: len(t.split()))
    assert [h.chunk.doc_id for h in packed] == ["d1", "d2"]
    # The first source is always given, even when alone it is over budget.
    assert len(pack_sources(hits, budget_tokens=10, count_tokens=lambda t: len(t.split()))) == 1


def test_looping_generation_is_recognised_and_normal_prose_is_not():
    from ragworks.generate.answer import is_degenerate

    loop = "The Fresnel Lens › The first lighthouse › " * 30
    prose = ("The Fresnel lens was invented by Augustin-Jean Fresnel, who presented his design in 1822. "
             "It was first installed in the Cordouan lighthouse in 1823, at the mouth of the Gironde. "
             "Its concentric prisms bend light into a horizontal beam visible far out to sea [1].")
    assert is_degenerate(loop)
    assert not is_degenerate(prose)
    assert not is_degenerate("yes yes yes")  # too short to judge
