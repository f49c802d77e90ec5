"""The app's non-UI logic (app/ui_*.py): PDF highlights, passages, cues, links, errors, settings."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pymupdf
import pytest

from app.catalog import SAMPLES_DIR
from app.llm.base import LLMError
from app.settings import Settings
from app.ui import sources as src
from app.ui.errors import explain
from app.ui.library import Library, RWLock, UIOptions, generator_key, size_label
from app.ui.reports import InlineImage, find_reports, read_table, split_images
from pipeline.errors import NothingIngested
from pipeline.types import Citation, Document, Span, TimedSegment

PDF = SAMPLES_DIR / "word-processor-history.pdf"


def _yellow_pixels(png: bytes) -> int:
    pix = pymupdf.Pixmap(png)
    data = pix.samples
    n = pix.n
    count = 0
    for i in range(0, len(data), n * 3):  # every third pixel is enough
        r, g, b = data[i], data[i + 1], data[i + 2]
        if r > 230 and g > 190 and b < 120:
            count += 1
    return count


def test_pdf_page_highlights_the_cited_words() -> None:
    quote = (
        "The origins of word processing can be traced back to the invention of the typewriter in the\nmid-"
    )
    img = src.render_pdf_page(PDF, 1, quote)
    assert img.found and img.n_pages == 5 and img.page == 1
    assert img.png.startswith(b"\x89PNG") and img.closeup is not None
    # The highlight is drawn: the page has yellow pixels, the same page without a quote has none.
    plain = src.render_pdf_page(PDF, 1, "words that are not on this page at all zebra quantum")
    assert not plain.found and plain.closeup is None
    assert _yellow_pixels(img.png) > 200
    assert _yellow_pixels(plain.png) == 0
    # The close-up is a strip of the page around the quote, wider than high.
    close = pymupdf.Pixmap(img.closeup)
    assert close.width > close.height


def test_pdf_highlight_survives_line_breaks_and_small_differences() -> None:
    words = pymupdf.open(PDF)[0].get_text("words")
    run = " ".join(w[4] for w in words[20:45])
    assert src.render_pdf_page(PDF, 1, run.replace(" ", "\n  ")).found
    fuzzy = run.split()
    fuzzy[5] = "XXXX"  # one word differs (a ligature or hyphen in practice)
    assert src.render_pdf_page(PDF, 1, " ".join(fuzzy)).found


def test_pdf_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ingest it again"):
        src.render_pdf_page(tmp_path / "gone.pdf", 1, "x")
    with pytest.raises(ValueError, match="has 5 pages, not a page 9"):
        src.render_pdf_page(PDF, 9, "x")


def test_passage_is_the_text_around_the_span_with_the_quote_marked() -> None:
    text = "alpha beta gamma " * 50 + "THE <QUOTE> & more" + " delta epsilon" * 50
    a = text.index("THE")
    span = Span(a, a + len("THE <QUOTE> & more"))
    p = src.passage(text, span, context=60)
    assert p.quote == "THE <QUOTE> & more"
    assert (p.before + p.quote + p.after) in text
    assert p.cut_start and p.cut_end
    assert p.before[0] != " " and not p.before.startswith("lpha")  # cut at a word start
    html = p.to_html()
    assert "<mark" in html and "THE &lt;QUOTE&gt; &amp; more</mark>" in html and "<QUOTE>" not in html
    pdfish = src.Passage("one\ntwo \n\nthree", "q", "", False, False).to_html(reflow=True)
    assert pdfish.startswith("<div") and "one two<br><br>three" in pdfish
    whole = src.passage("short text", Span(0, 5))
    assert not whole.cut_start and not whole.cut_end and whole.after == " text"


def test_markers_link_to_their_source_panels() -> None:
    md = src.link_markers("Yes [1]. Also [2, 3]. Not [9].", turn=4, known={1, 2, 3})
    assert "[\\[1\\]](#src-4-1)" in md
    assert "[\\[2\\]](#src-4-2)[\\[3\\]](#src-4-3)" in md
    assert "\\[9\\]" in md and "#src-4-9" not in md  # unknown markers stay literal text


def test_document_and_model_text_is_literal_in_markdown() -> None:
    """No hidden links, no images fetching a URL, no Streamlit directives from documents,
    questions, file names or answers."""
    hostile = (
        "See [here](http://evil.example/?q=secret) ![x](http://evil.example/p.png) :red[alarm] $x$ <b>b</b>"
    )
    md = src.md_text(hostile)
    assert "](" not in md and "[" not in md.replace("\\[", "") and "<b>" not in md
    import re

    assert re.sub(r"\\(.)", r"\1", md) == hostile  # what is shown is exactly the text
    linked = src.link_markers("Cited [1]. See [a](http://e.x/).", turn=0, known={1})
    assert linked == "Cited [\\[1\\]](#src-0-1)\\. See \\[a\\]\\(http\\://e\\.x/\\)\\."


def _transcript(tmp_path: Path) -> Document:
    lines = ["Welcome to the course.", "Today we look at tokenizers.", "They split text.", "Bye now."]
    text, segs, pos = "", [], 0
    for i, line in enumerate(lines):
        segs.append(TimedSegment(i, 60.0 * i + 12, 60.0 * i + 41, Span(pos, pos + len(line))))
        text += line + "\n"
        pos = len(text)
    return Document(
        "d1", str(tmp_path / "talk.srt"), "transcript", text, "h", segments=tuple(segs), title="talk"
    )


def test_transcript_cues_show_times_and_the_cited_cues(tmp_path: Path) -> None:
    doc = _transcript(tmp_path)
    a = doc.text.index("Today")
    span = Span(a, doc.text.index("They split text.") + 5)
    lines = src.cue_lines(doc, span, around=1)
    assert [ln.text for ln in lines] == [
        "Welcome to the course.",
        "Today we look at tokenizers.",
        "They split text.",
        "Bye now.",
    ]
    assert [ln.cited for ln in lines] == [False, True, True, False]
    assert lines[1].label == "01:12"
    html = src.cues_html(lines)
    assert "<code" in html and "01:12" in html and html.count("<mark") == 2
    cite = Citation(1, "d1", doc.source_path, None, span, None, doc.time_for(span), "q", True)
    assert src.location_label(cite) == "01:12–02:41"


def test_media_player_file_is_found_next_to_the_transcript(tmp_path: Path) -> None:
    srt = tmp_path / "talk.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:02,000\nhi\n")
    assert src.find_media(str(srt)) is None
    (tmp_path / "talk.mp3").write_bytes(b"ID3")
    assert src.find_media(str(srt)) == src.Media(tmp_path / "talk.mp3", "audio")
    (tmp_path / "talk.mp4").write_bytes(b"\0")
    assert src.find_media(str(srt)).kind == "video"  # type: ignore[union-attr]
    assert src.find_media(str(tmp_path / "talk.mp4")).path == tmp_path / "talk.mp4"  # type: ignore[union-attr]


def test_citation_labels_say_where_and_whether_verified() -> None:
    c = Citation(2, "d", "/x/a.pdf", None, Span(0, 5), (3, 4), None, "quote", False, 0.25, "repaired")
    assert src.location_label(c) == "pp. 3–4"
    assert src.status_label(c) == "unverified"
    assert "25%" in src.explain_status(c) and "moved to the one that supports" in src.explain_status(c)
    # The checker's own verdict and reason, when the citation carries them (issue 19).
    why = replace(
        c, verdict="contradicted", reason="the claim gives 412 gigawatt, the passage 412 with megawatt"
    )
    assert src.explain_status(why).startswith("Unverified (contradicted): the claim gives 412 gigawatt")


def test_errors_are_explained_with_the_fix() -> None:
    remote = Settings(llm={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"})
    p = explain(
        LLMError("the LLM server at http://127.0.0.1:9/v1 did not answer; check that it is running"), remote
    )
    assert p.message.startswith("The LLM server at http://127.0.0.1:9/v1 did not answer")
    assert "http://127.0.0.1:9/v1 is running" in p.fix and "embedded llama.cpp" in p.fix
    p = explain(NothingIngested())  # what QAService.ask raises on an empty library
    assert "Library tab" in p.fix
    opts = UIOptions.from_settings(Settings())
    with pytest.raises(Exception) as bad:
        UIOptions(**{**opts.__dict__, "top_k": 0}).apply(Settings())
    p = explain(bad.value)
    assert "retrieval.top_k" in p.message and "sidebar" in p.fix
    p = explain(KeyError("boom"))
    assert p.message.startswith("Unexpected error: KeyError") and "server log" in p.fix
    try:
        (Path("/tmp") / ("n" * 600 + ".pdf")).write_bytes(b"x")
    except OSError as exc:
        p = explain(exc)
    assert "File name too long" in p.message and p.fix == "Rename the file to a shorter name."


def test_sidebar_options_apply_and_only_llm_changes_reload_the_model(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path)
    opts = UIOptions.from_settings(base)
    assert opts.apply(base).model_dump() == base.model_dump()
    more = UIOptions(**{**opts.__dict__, "top_k": 3, "max_tokens": 64, "latency_budget_s": 5.0})
    s = more.apply(base)
    assert (s.retrieval.top_k, s.llm.max_tokens, s.router.latency_budget_s) == (3, 64, 5.0)
    assert s.data_dir == base.data_dir
    assert generator_key(s) == generator_key(base)
    other = UIOptions(**{**opts.__dict__, "backend": "openai", "base_url": "http://h:1/v1"}).apply(base)
    assert generator_key(other) != generator_key(base)


def test_size_labels() -> None:
    assert size_label("pdf", 4000, 5, None) == "5 pages · ≈1,000 tokens"
    assert size_label("transcript", 400, None, 312.0) == "5.2 min · ≈100 tokens"
    assert size_label("text", 10, None, None) == "≈2 tokens"


def test_rwlock_lets_readers_share_and_writers_wait() -> None:
    lock = RWLock()
    order: list[str] = []
    with lock.read(), lock.read():  # two readers at once
        t = threading.Thread(target=lambda: [lock.write().__enter__(), order.append("w")])
        t.start()
        time.sleep(0.1)
        order.append("r")
    t.join(2)
    assert order == ["r", "w"]


def test_reports_are_found_and_read(tmp_path: Path) -> None:
    run = tmp_path / "lara-2025" / "run1"
    run.mkdir(parents=True)
    (run / "summary.md").write_text("# Accuracy\n")
    (run / "scores.csv").write_text("mode,acc\nrag,0.5\nlc,0.6\n")
    (run / "preds.jsonl").write_text(json.dumps({"q": 1}) + "\n" + json.dumps({"q": 2}) + "\n")
    (run / "plot.png").write_bytes(pymupdf.Pixmap(pymupdf.csRGB, (0, 0, 4, 4), False).tobytes("png"))
    (tmp_path / "notes.md").write_text("top-level report")
    (tmp_path / "ignored.bin").write_bytes(b"\0")
    # An eval run keeps its library in <out>/library; its engine log, written last, is no report.
    out = tmp_path / "eval-out"
    (out / "library" / "logs").mkdir(parents=True)
    (out / "report.md").write_text("# longqa eval\n")
    (out / "library" / "longqa.db").write_bytes(b"")
    (out / "library" / "logs" / "engine.log").write_text("llama.cpp started\n")
    reports = find_reports([tmp_path, tmp_path / "missing"])
    by_name = {r.name: r for r in reports}
    assert set(by_name) == {"lara-2025/run1", "eval-out", "notes.md"}
    kinds = [f.kind for f in by_name["lara-2025/run1"].files]
    assert kinds == ["markdown", "image", "table", "table"]
    assert read_table(run / "scores.csv") == [{"mode": "rag", "acc": "0.5"}, {"mode": "lc", "acc": "0.6"}]
    assert read_table(run / "preds.jsonl", limit=1) == [{"q": 1}]


def test_report_images_are_cut_out_where_the_markdown_puts_them(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    png = pymupdf.Pixmap(pymupdf.csRGB, (0, 0, 4, 4), False).tobytes("png")
    (run / "a.png").write_bytes(png)
    (tmp_path / "outside.png").write_bytes(png)
    md = (
        "# Report\n\n![Accuracy by task](a.png)\n\ntext between\n\n"
        '![titled](<a.png> "A title")\n'
        "![remote](https://example.com/x.png) ![up](../outside.png) ![gone](missing.png)\n"
    )
    pieces = split_images(md, run)
    assert pieces[0] == "# Report\n\n"
    assert pieces[1] == InlineImage((run / "a.png").resolve(), "Accuracy by task")
    assert pieces[2] == "\n\ntext between\n\n"
    assert pieces[3] == InlineImage((run / "a.png").resolve(), "titled")
    # A URL, a path outside the report's folder and a missing file stay as the Markdown has them.
    assert pieces[4] == "\n![remote](https://example.com/x.png) ![up](../outside.png) ![gone](missing.png)\n"
    assert len(pieces) == 5
    assert split_images("no images here", run) == ["no images here"]


def test_session_views_share_one_library_and_use_their_own_top_k(service, settings, smol) -> None:  # type: ignore[no-untyped-def]
    lib = Library(settings, service=service)
    report = lib.ingest(settings, [SAMPLES_DIR])
    assert len(report.ingested) == 2 and not report.failed
    narrow = UIOptions(**{**UIOptions.from_settings(settings).__dict__, "top_k": 2}).apply(settings)
    view = lib.view(narrow, smol)
    assert view.store is service.store and view.index is service.index and view.retriever is service.retriever
    outs: list = []
    threads = [
        threading.Thread(target=lambda: outs.append(lib.ask(view, "Who developed WordStar?", "rag")))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(outs) == 2 and all(o.problem is None for o in outs), outs
    assert all(o.answer.retrieval == "hybrid top-2" for o in outs)
    # A delete through the library is seen by every view; store and index stay in step.
    pdf = next(r for r in lib.ready() if r.kind == "pdf")
    assert lib.delete([pdf.doc_id]).passages > 0
    assert [r.kind for r in lib.ready()] == ["text"]
    assert service.index.ids() == service.store.all_vec_ids()
    out = lib.ask(view, "Who developed WordStar?", "rag", [pdf.doc_id])
    assert out.answer is None and out.problem is not None
    assert "no longer in the library" in out.problem.message


def _cite(n: int, verified: bool) -> Citation:
    return Citation(n, "d", "x.txt", None, Span(0, 5), None, None, "quote", verified)


def test_grounding_marks_answers_without_a_verified_source() -> None:
    ok = src.grounding("WordStar was written by Rob Barnaby [1].", [_cite(1, True)])
    assert ok.kind == "verified" and ok.banner == "" and ok.orphans == ()
    none = src.grounding("Tokyo has around 12.5 million people.", [])
    assert none.kind == "none" and none.banner.startswith("No verified source in your documents")
    weak = src.grounding("It was 1978 [1]. Also [3].", [_cite(1, False)])
    assert weak.kind == "unverified" and "No verified source" in weak.banner
    assert weak.orphans == (3,)  # [3] has no passage: the panel count stays honest
    refused = src.grounding("The documents do not contain the population of Tokyo.", [])
    assert refused.kind == "not_found" and refused.banner.startswith("Not in your documents")
    assert src.markers_in("a [2] b [1, 2] c [4]") == [2, 1, 4]


def test_recheck_reasons_in_plain_words_and_the_reading_estimate() -> None:
    from app.answering.modes import RECHECK_NOTE
    from app.llm.control import PrefillState
    from app.ui.asking import plain_reason, reading_label

    assert "checking the draft against the sources" in plain_reason(RECHECK_NOTE)
    fb = "the RAG answer looks unsure (fallback score 0.66 >= 0.65), so the whole document was read"
    words = plain_reason(fb)
    assert "whole document is being read" in words and "0.66" not in words and "score" not in words
    p = PrefillState(tokens=6000, tokens_per_s=150.0, started=time.monotonic() - 10)
    label = reading_label(p)
    assert label.startswith("Reading 6,000 tokens") and "about 30 s left of 40 s" in label
    assert "150 tokens/s" in label and 0.24 < p.fraction < 0.26
    p.done = 3000  # the engine's own count is ahead of the clock: it wins
    assert p.fraction == pytest.approx(0.5) and p.left_s == pytest.approx(20.0, abs=0.5)
    late = PrefillState(tokens=100, tokens_per_s=100.0, started=time.monotonic() - 5)
    assert "taking longer than the 1 s expected" in reading_label(late) and late.fraction == 0.99


def test_ingest_progress_says_which_file_which_stage_and_how_far() -> None:
    from app.ui.library import IngestStep

    step = IngestStep("/data/report.pdf", 1, 4, "embed", pages=12, chunks=80, part=0.5)
    assert step.fraction == pytest.approx(1.5 / 4)
    assert (
        step.label() == "1/4 files · report.pdf: embedding its passages, 50% · 12 pages, 80 passages so far"
    )
    assert IngestStep("/data/a.txt", 0, 2, "load").label() == "0/2 files · a.txt: reading"
    assert IngestStep("", 2, 2, "finished", 3, 9).fraction == 1.0


def test_ingest_failures_are_shown_without_server_paths_or_exception_names() -> None:
    from app.ui.errors import plain_failure

    why = (
        "cannot read '/srv/longqa/uploads/broken.pdf': not a readable PDF (FileDataError); "
        "check that the file is not corrupt"
    )
    assert plain_failure("/srv/longqa/uploads/broken.pdf", why) == (
        "cannot read 'broken.pdf': not a readable PDF; check that the file is not corrupt"
    )
    assert plain_failure("/x/a.txt", "the file is empty (pymupdf.EmptyFileError)") == "the file is empty"
