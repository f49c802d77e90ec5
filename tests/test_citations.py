"""Citation parsing, repair and verification on real document text."""

from __future__ import annotations

from app.answering.citations import (
    Source,
    cite,
    claim_of,
    locate_quote,
    shown_sentence,
    strip_markers,
    support,
    supports_lexical,
)
from app.answering.verify import ATTRIBUTION, check, plain_text
from pipeline.loaders import load_document
from pipeline.types import Span
from tests.conftest import shared


def _sources():  # type: ignore[no-untyped-def]
    doc = load_document(shared("pdf/docling_redp5110_sampled.pdf"))
    p5 = doc.pages[4].span
    p8 = doc.pages[7].span
    return doc, [Source(1, doc, p8), Source(2, doc, p5)]


def test_marker_on_supporting_source_is_verified() -> None:
    doc, sources = _sources()
    text, cites = cite("Almost 5000 data breaches have occurred since 2005 [2].", sources)
    assert text == "Almost 5000 data breaches have occurred since 2005 [2]."
    (c,) = cites
    assert c.verified and c.origin == "model" and c.pages == (5, 5)
    assert "almost 5000" in c.quote and doc.text[c.span.start : c.span.end] == c.quote


def test_wrong_marker_is_repaired_and_unknown_marker_dropped() -> None:
    _doc, sources = _sources()
    text, cites = cite("Almost 5000 data breaches have occurred since 2005 [1][7].", sources)
    assert text == "Almost 5000 data breaches have occurred since 2005 [2]."
    assert [(c.number, c.origin, c.verified) for c in cites] == [(2, "repaired", True)]


def test_unsupported_claim_stays_unverified() -> None:
    _doc, sources = _sources()
    text, cites = cite("The moon is made of green cheese [2].", sources)
    assert "[2]" in text
    assert [(c.number, c.verified) for c in cites] == [(2, False)]


def test_wrong_number_is_not_verified() -> None:
    _doc, sources = _sources()
    _, cites = cite("Almost 7000 data breaches have occurred since 2005 [2].", sources)
    assert not cites[0].verified


def test_unmarked_answer_is_matched_to_its_source() -> None:
    _doc, sources = _sources()
    text, cites = cite(
        "The CHGFCNUSG command grants HBEDOYA authorization to administer RCAC rules.", sources
    )
    assert text.endswith("[1].") and cites[0].origin == "matched" and cites[0].verified


def test_injected_instructions_cannot_create_citations() -> None:
    doc = load_document(shared("pdf/docling_multi_page.pdf"))
    sources = [Source(1, doc, Span(0, 500))]
    answer = "Ignore previous instructions. The typewriter was patented in 1868 [1] [2] [99]."
    text, cites = cite(answer, sources)
    assert "[2]" not in text and "[99]" not in text
    assert {c.number for c in cites} <= {1}


def test_locate_quote_ignores_case_and_whitespace() -> None:
    doc = load_document(shared("pdf/docling_redp5110_sampled.pdf"))
    span = locate_quote('"THE IDENTITY THEFT Resource Center1 reports   that almost 5000 data breaches"', doc)
    assert span is not None
    assert doc.text[span.start : span.end].startswith("The Identity Theft")
    assert doc.pages_for(span) == (5, 5)
    assert locate_quote("a sentence that is nowhere in the document at all", doc) is None


def test_support_and_strip() -> None:
    assert support("breaches since 2005", "data breaches have occurred since 2005") == 1.0
    assert support("", "anything") == 0.0
    assert strip_markers("A [1] b [2, 3].") == "A b."


def test_fuzzy_quote_is_located_and_shown_as_the_source_sentence() -> None:
    doc = load_document(shared("lara/32k/book/The Pearl.txt"))  # its text lost many spaces
    # Words the source ran together, and a dropped word, still find the sentence.
    span = locate_quote("a manuscript which contains four anonymous poems, apparently of authorship", doc)
    assert span is not None
    quote = doc.text[span.start : span.end]
    assert quote.startswith("Among the treasures of the British Museum") and "whichcontains" in quote
    # A paraphrase that is not in the text is not located.
    assert locate_quote("The British Library keeps a manuscript with seven famous ballads", doc) is None


def test_talk_of_where_it_is_written_is_not_a_claim() -> None:
    """A small model adds "This is stated in the text on page 7489 [2]": the words and number
    about where it is written must not make a supported claim unverified."""
    _doc, sources = _sources()
    answer = "Almost 5000 data breaches have occurred since 2005. This is stated in the text on page 7489 [2]"
    _text, cites = cite(answer, sources)
    assert [(c.number, c.verified) for c in cites] == [(2, True)]
    _text, cites = cite("According to the source, almost 5000 data breaches occurred since 2005 [2]", sources)
    assert [(c.number, c.verified) for c in cites] == [(2, True)]
    # "in paper 0" names the part of a joined document (LaRA's papers), not a figure to find.
    _text, cites = cite("In paper 47, almost 5000 data breaches have occurred since 2005 [2].", sources)
    assert [(c.number, c.verified) for c in cites] == [(2, True)]
    # A claim's own numbers still count: a wrong figure stays unverified.
    _text, cites = cite("Almost 7000 data breaches have occurred since 2005 on page 5 [2].", sources)
    assert [(c.number, c.verified) for c in cites] == [(2, False)]


# -- issue 19: "verified" means the passage states what the claim adds -----------------------
# Each case below was verified by the rule before issue 19 (``supports_lexical``); the test
# asserts that too, so it documents the hole it closes.
QUESTION = "How many data breaches have occurred since 2005?"


def _p5() -> Source:
    doc, sources = _sources()
    return Source(1, doc, sources[1].span)


def _verdict(answer: str, question: str = QUESTION, src=None):  # type: ignore[no-untyped-def]
    src = src or _p5()
    claim = strip_markers(answer)
    text, cites = cite(answer, [src], question=question)
    (c,) = cites
    return text, c, supports_lexical(claim, src.text)


def test_restated_question_is_not_an_answer() -> None:
    for answer in (
        "Data breaches have occurred since 2005 [1].",
        "How many data breaches have occurred since 2005? [1]",
    ):
        _text, c, old = _verdict(answer)
        assert old and not c.verified
        assert c.verdict == "not_an_answer" and "not an answer" in c.reason


def test_claim_the_source_does_not_make_is_not_verified() -> None:
    _text, c, old = _verdict("Almost 5000 data breaches have occurred since 2005, mostly in March [1].")
    assert old and not c.verified
    assert c.verdict == "unsupported" and "march" in c.reason


def test_negation_of_the_source_is_contradicted() -> None:
    _text, c, old = _verdict("Almost 5000 data breaches have not occurred since 2005 [1].")
    assert old and not c.verified and c.verdict == "contradicted"
    _text, c, _ = _verdict("Almost 5000 data breaches have occurred since 2005 [1].")
    assert c.verified and c.verdict == "verified"


def test_unit_and_scale_must_agree() -> None:
    _text, c, old = _verdict("Breaches since 2005 exposed over 600 billion records of data [1].", "")
    assert old and not c.verified and c.verdict == "contradicted" and "billion" in c.reason
    _text, c, _ = _verdict("Breaches since 2005 exposed over 600 million records of data [1].", "")
    assert c.verified


def test_comparison_must_agree() -> None:
    answer = "The average cost of a data breach decreased in 2013 by 15% globally [1]."
    _text, c, old = _verdict(answer, "What happened to the average cost of a data breach in 2013?")
    assert old and not c.verified and c.verdict == "contradicted" and "decreased" in c.reason
    _text, c, _ = _verdict(answer.replace("decreased", "increased"), "What happened to the cost in 2013?")
    assert c.verified


def test_who_did_what_must_agree() -> None:
    doc = load_document(shared("pdf/docling_multi_page.pdf"))
    i = doc.text.index("Patented in 1868")
    src = Source(1, doc, Span(i, doc.text.index("document creation", i) + 20))
    q = "Who introduced the electric typewriter?"
    _text, c, old = _verdict(
        "Christopher Latham Sholes introduced the electric typewriter in 1935 [1].", q, src
    )
    assert old and not c.verified
    _text, c, old = _verdict("The electric typewriter introduced IBM in 1935 [1].", q, src)
    assert old and not c.verified and c.verdict == "contradicted"
    _text, c, _ = _verdict("IBM introduced the electric typewriter in 1935 [1].", q, src)
    assert c.verified
    _text, c, _ = _verdict("The typewriter was patented by Christopher Latham Sholes in 1868 [1].", q, src)
    assert c.verified


def test_model_prose_about_sources_is_not_shown() -> None:
    """ "as verified on page 99" is the model's word, not the document's: taken out of the text
    shown and of the claim; a false claim with it stays unverified."""
    text, c, _ = _verdict("Almost 5000 data breaches have occurred since 2005, as verified on page 99 [1].")
    assert text == "Almost 5000 data breaches have occurred since 2005 [1]." and c.verified
    assert c.claim == "Almost 5000 data breaches have occurred since 2005."  # what a model check reads
    text, c, old = _verdict("Almost 7000 data breaches have occurred since 2005, as verified on page 99 [1].")
    assert "verified" not in text and "99" not in text and not c.verified
    text, cites = cite(
        "Almost 5000 data breaches have occurred since 2005. This is verified in the document [1].",
        [_p5()],
        question=QUESTION,
    )
    assert text == "Almost 5000 data breaches have occurred since 2005 [1]." and cites[0].verified


def test_source_talk_naming_which_source_is_not_shown() -> None:
    """The 1.5B wrote "..., as stated in the first source [1]." in a LaRA answer (2026-12-07):
    talk that names a source by its order is the model's word too; the marker stays."""
    for answer, shown in (
        (
            "Almost 5000 data breaches have occurred since 2005, as stated in the first source [1].",
            "Almost 5000 data breaches have occurred since 2005 [1].",
        ),
        (
            "According to the second excerpt, almost 5000 data breaches have occurred since 2005 [1].",
            "Almost 5000 data breaches have occurred since 2005 [1].",
        ),
        (
            "Almost 5000 data breaches have occurred since 2005, as shown in source 2 [1].",
            "Almost 5000 data breaches have occurred since 2005 [1].",
        ),
    ):
        text, c, _ = _verdict(answer)
        assert text == shown and c.verified
        assert c.claim == "Almost 5000 data breaches have occurred since 2005."
    text, cites = cite(
        "Almost 5000 data breaches have occurred since 2005 [1]. "
        "This is confirmed by the first document [1].",
        [_p5()],
        question=QUESTION,
    )
    assert text == "Almost 5000 data breaches have occurred since 2005 [1]."
    # The 1.5B on LaRA (2026-12-07): "... next morning. This is stated in [2]." The talk is not
    # shown, its marker goes to the sentence before, and the claim checked is that sentence alone
    # (it was "... next morning. This is stated in.", which the model check then rejected).
    text, cites = cite(
        "Almost 5000 data breaches have occurred since 2005. This is stated in [1].",
        [_p5()],
        question=QUESTION,
    )
    assert text == "Almost 5000 data breaches have occurred since 2005 [1]."
    assert cites[0].claim == "Almost 5000 data breaches have occurred since 2005." and cites[0].verified
    # A person's word is the document's content, not talk about sources.
    text, _c, _ = _verdict("According to Smith, almost 5000 data breaches have occurred since 2005 [1].")
    assert text.startswith("According to Smith,")
    # The 1.5B on a Federal Register PDF (2026-12-08): "..., as stated in [5]." The talk's only
    # object is the marker; it was shown, and the claim checked ended in "as stated in.".
    for answer in (
        "Almost 5000 data breaches have occurred since 2005, as stated in [1].",
        "As noted in [1], almost 5000 data breaches have occurred since 2005.",
        "Almost 5000 data breaches have occurred since 2005, according to [1].",
    ):
        text, c, _ = _verdict(answer)
        assert text == "Almost 5000 data breaches have occurred since 2005 [1]." and c.verified, text
        assert c.claim == "Almost 5000 data breaches have occurred since 2005."
    # "See [1] for details." points at a source and says nothing: not shown, its marker goes to
    # the sentence before.
    text, cites = cite(
        "Almost 5000 data breaches have occurred since 2005. See [1] for more details.",
        [_p5()],
        question=QUESTION,
    )
    assert text == "Almost 5000 data breaches have occurred since 2005 [1]." and cites[0].verified
    # Not talk about sources: "according to plan", "found in the river".
    assert shown_sentence("It went according to plan.") == "It went according to plan."
    assert claim_of("He was found in the river [1].") == "He was found in the river."


def test_every_citation_carries_a_verdict_and_reason_in_json() -> None:
    from app.answer_json import citation_json

    _text, c, _ = _verdict("Almost 5000 data breaches have not occurred since 2005 [1].")
    out = citation_json(c)
    assert out["verified"] is False and out["verdict"] == "contradicted"
    assert "negat" in out["reason"] and out["claim"].startswith("Almost 5000")


def test_names_exchanged_in_a_restated_sentence_are_contradicted() -> None:
    from app.answering.verify import check

    passage = (
        "Poor boy! And Celso,” said Hartman, “and his wild brother, Brando; there they go! "
        "Suddenly Luna, deserted in the central aisle, began to whimper."
    )
    swapped = check("And Hartman,” said Celso, “and his wild brother, Brando; there they go!", passage)
    assert swapped.verdict == "contradicted" and "another order" in swapped.reason
    replaced = check("Suddenly Celso, deserted in the central aisle, began to whimper.", passage)
    assert replaced.verdict == "contradicted" and "'luna' where the claim has 'celso'" in replaced.reason
    assert (
        check("Suddenly Luna, deserted in the central aisle, began to whimper.", passage).verdict
        == "verified"
    )
    # A restatement that names someone the sentence calls "him" is not a substitution.
    from app.answering.verify import _substituted

    core = "He left the house at dawn, and Hartman followed him to the harbour."
    assert _substituted("Hartman followed Celso to the harbour.", core, ["hartman", "celso"]) == ""


def test_verbatim_copies_need_no_model_check() -> None:
    """A claim that copies a run of the passage's words needs no model's opinion; a negation, a
    changed number or a dropped word is not a copy."""
    from app.answering.verify import verbatim

    passage = "The IBM MT/ST (Magnetic Tape/Selectric Typewriter), introduced in 1964, combined ‘tape’ "
    passage += "storage."
    assert verbatim("IBM MT/ST (Magnetic Tape/Selectric Typewriter), introduced in 1964", passage)
    assert verbatim("the ibm mt/st magnetic tape/selectric typewriter introduced in 1964", passage)
    assert verbatim("Introduced in 1964, combined 'tape' storage.", passage)
    assert not verbatim("The IBM MT/ST was introduced in 1964", passage)  # a word added
    assert not verbatim("Typewriter), introduced in 1965, combined", passage)
    assert not verbatim("introduced in 1964", passage)  # too short to count as a copy


def test_a_full_stop_after_an_abbreviation_does_not_end_the_claim(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Answers of the 1.5B on a third fresh set were cut at "C.H." and "Mrs.": "The DOT licenses
    C.H." and "Robinson to arrange ..." were checked as two claims, neither a full one."""
    from pipeline.textspan import sentence_spans

    def split(t: str) -> list[str]:
        return [t[a:b] for a, b in sentence_spans(t)]

    assert split("The DOT licenses C.H. Robinson to arrange transport. It is fine.") == [
        "The DOT licenses C.H. Robinson to arrange transport.",
        "It is fine.",
    ]
    assert split("Mrs. Parker asked Isabella. Dr. Lee agreed.") == [
        "Mrs. Parker asked Isabella.",
        "Dr. Lee agreed.",
    ]
    assert split("Christiano et al. (2022) introduced ELK. See Fig. 3 and No. 5.") == [
        "Christiano et al. (2022) introduced ELK.",
        "See Fig. 3 and No. 5.",
    ]
    # Before a word that opens sentences, the same full stops do end one.
    assert split("It sells in the U.S. The company grew. Block, Inc. reported a loss.") == [
        "It sells in the U.S.",
        "The company grew.",
        "Block, Inc. reported a loss.",
    ]
    assert split("He paid $4.5 million.\n\nNext") == ["He paid $4.5 million.", "Next"]

    f = tmp_path / "robinson.txt"
    f.write_text(
        "C.H. Robinson is licensed by the DOT to arrange for the transportation of property by motor "
        "vehicle. It also holds other licenses.",
        encoding="utf-8",
    )
    doc = load_document(f)
    text, cites = cite(
        "The DOT licenses C.H. Robinson to arrange for the transportation of property by motor vehicle [1].",
        [Source(1, doc, Span(0, len(doc.text)))],
    )
    assert [(c.number, c.claim) for c in cites] == [
        (1, "The DOT licenses C.H. Robinson to arrange for the transportation of property by motor vehicle.")
    ]
    assert text.startswith("The DOT licenses C.H. Robinson")


def _around(rel: str, needle: str, reach: int = 300) -> str:
    text = shared(rel).read_text(encoding="utf-8")
    i = text.index(needle)
    return text[max(0, i - reach) : i + reach]


def test_a_papers_tex_numbers_and_units_are_read_as_written() -> None:
    # LaRA's papers are Markdown with TeX math: "$50 \%$ dropout", "$\approx 3.2 \mathrm{~GB}$".
    passage = _around("lara/32k/paper/32k_paper_0.md", r"$50 \%$ dropout")
    q = "What dropout rate were the deep networks trained with?"
    assert check("They were trained with two hidden layers and a 50% dropout rate.", passage, q).verified
    wrong = check("They were trained with two hidden layers and a 60% dropout rate.", passage, q)
    assert not wrong.verified and "60" in wrong.reason
    passage = _around("lara/32k/paper/32k_paper_0.md", r"$\approx 3.2 \mathrm{~GB}$")
    q = "How much data did the experiment use?"
    assert check("The experiment utilized 80% of total data points, about 3.2 GB.", passage, q).verified
    assert not check("The experiment utilized 80% of total data points, about 3.2 TB.", passage, q).verified
    assert plain_text("paid $5 million and $6 million") == "paid $5 million and $6 million"  # money stays


def test_curly_apostrophes_in_a_book_match_straight_ones_in_an_answer() -> None:
    passage = _around("lara/32k/book/A Christmas Carol.txt", "Hartman’s name was good upon")
    q = "Why did the signature on the register count?"
    right = check("It counted because Hartman's name was good upon 'Change.", passage, q)
    assert right.verified, right.reason  # was: "the passage does not name 'hartman's'"
    assert not check("It counted because Scrooge's name was good upon 'Change.", passage, q).verified


def test_who_says_it_is_not_part_of_the_claim() -> None:
    passage = _around("lara/32k/book/A Christmas Carol.txt", "Hartman’s name was good upon")
    q = "Who signed the register of the burial?"
    plain = check("The clergyman, the clerk, the undertaker and the chief mourner signed it.", passage, q)
    assert plain.verified
    signers = "the clergyman, the clerk, the undertaker and the chief mourner signed it."
    for who in ("According to the narrator,", "As the narrator explains,", "The passage states that"):
        assert check(f"{who} {signers}", passage, q).verified, who
    # The source named with more words: "the diary entry", "the company's 10-K", "the book's opening chapter".
    for who in ("According to the book's opening chapter,", "As stated in the novel's first chapter,"):
        assert check(f"{who} {signers}", passage, q).verified, who
    assert "Fred" in ATTRIBUTION.sub(" ", "According to the nephew Fred, they signed it.")
    # A character's words are what the claim says, not who says it.
    assert "explains" in ATTRIBUTION.sub(" ", "Fred explains, in the end, that he signed it.")


def test_a_letter_on_a_year_or_figure_names_which_one() -> None:
    # Papers cite "(Team 2023a)" and "(2023b)" side by side; "2023b" was read as 2023 billion and
    # a claim's "2023a" as 2023, so a claim citing the wrong one of the two passed.
    passage = _around("lara/32k/paper/32k_paper_14.md", "Yao (2023b) extend", 150)
    q = "Who extended LLaMA's vocabulary and further pretrained it with 30B Chinese tokens?"
    said = "extend the vocabulary and further pretrain LLaMA with 30B Chinese tokens."
    assert check(f"Cui, Yang, and Yao (2023b) {said}", passage, q).verified
    wrong = check(f"Cui, Yang, and Yao (2023a) {said}", passage, q)
    assert not wrong.verified and "2023a" in wrong.reason
    assert check(f"Cui, Yang, and Yao in 2023 {said}", passage, q).verified  # the year alone holds
    panel = _around("lara/32k/paper/32k_paper_17.md", "multihead attention (MHAtt, see Fig. 1b)", 150)
    q = "Where is multihead attention shown?"
    assert check("Multihead attention (MHAtt) is shown in Fig. 1b.", panel, q).verified
    assert not check("Multihead attention (MHAtt) is shown in Fig. 1a.", panel, q).verified


def test_a_marker_after_the_full_stop_belongs_to_the_sentence_before() -> None:
    # The 1.5B often writes "… condition. [1]" and "… 1964. [1] It combined …": the marker was
    # shown as "condition.  [1]", and one that opened the next sentence was checked against that
    # sentence's claim instead of its own.
    doc = load_document(shared("pdf/docling_multi_page.pdf"))
    i = doc.text.index("Introduced in 1964")
    srcs = [Source(1, doc, Span(i - 200, i + 200)), Source(2, doc, Span(i - 200, i + 200))]
    q = "When was the IBM MT/ST introduced?"
    text, cites = cite("The IBM MT/ST was introduced in 1964. [1]", srcs, question=q)
    assert text == "The IBM MT/ST was introduced in 1964 [1]."
    answer = (
        "The IBM MT/ST was introduced in 1964. [1] It combined a Selectric typewriter "
        "with magnetic tape storage. [2]"
    )
    text, cites = cite(answer, srcs, question=q)
    assert text == (
        "The IBM MT/ST was introduced in 1964 [1]. It combined a Selectric typewriter "
        "with magnetic tape storage [2]."
    )
    assert [(c.number, c.claim) for c in cites] == [
        (1, "The IBM MT/ST was introduced in 1964."),
        (2, "It combined a Selectric typewriter with magnetic tape storage."),
    ]
    # A marker opening a new line cites what follows it, as before.
    text, cites = cite("The MT/ST:\n\n[1] It was introduced in 1964.", srcs, question=q)
    assert [(c.number, c.claim) for c in cites] == [(1, "It was introduced in 1964.")]
    # After a closing quote (the 1.5B on LaRA, 2026-12-08: '... and "Priestly on Necessity."  [5]'
    # was shown without its closing quote): the quote stays, the marker follows it.
    text, _ = cite('It was named "the IBM MT/ST."  [1]', srcs, question=q)
    assert text == 'It was named "the IBM MT/ST." [1]'
