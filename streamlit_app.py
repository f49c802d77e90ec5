"""Streamlit front door: a thin UI over app.service.QAService (no business logic here).

Run: streamlit run streamlit_app.py   (it ingests the bundled samples on first start)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from app.answering import fmt_time
from app.cli import SAMPLES
from app.service import QAService
from app.settings import Settings

st.set_page_config(page_title="longqa", page_icon="📚", layout="wide")


@st.cache_resource(show_spinner="Loading models and index…")
def get_service() -> QAService:
    svc = QAService(Settings())
    if not svc.documents():
        svc.ingest([SAMPLES])
    return svc


def where(c) -> str:  # type: ignore[no-untyped-def]
    if c.pages:
        return f"p. {c.pages[0]}" if c.pages[0] == c.pages[1] else f"pp. {c.pages[0]}–{c.pages[1]}"
    if c.time:
        return f"{fmt_time(c.time[0])}–{fmt_time(c.time[1])}"
    return f"chars {c.span.start}–{c.span.end}"


try:
    svc = get_service()
except Exception as exc:  # shown as a message, never a stack trace
    st.error(f"longqa could not start: {exc}")
    st.stop()

with st.sidebar:
    st.header("Library")
    uploads = st.file_uploader("Add documents", type=["pdf", "txt", "md"], accept_multiple_files=True)
    if uploads and st.button("Ingest uploads"):
        folder = Path(tempfile.mkdtemp(prefix="longqa-upload-"))
        paths = []
        for up in uploads:
            target = folder / Path(up.name).name  # never outside the upload folder
            target.write_bytes(up.getvalue())
            paths.append(target)
        with st.spinner("Ingesting…"):
            report = svc.ingest(paths)
        st.success(report.summary())
        for _p, why in report.failed:
            st.warning(why)
    docs = svc.documents()
    labels = {d.doc_id: f"{Path(d.source_path).name} ({d.n_pages or '–'} p.)" for d in docs}
    chosen = st.multiselect("Ask over", list(labels), format_func=labels.get, placeholder="all documents")
    mode = st.radio("Mode", ["auto", "rag", "lc"], horizontal=True)

st.title("Ask your documents")
question = st.chat_input("Ask a question about the documents")
if question:
    with st.chat_message("user"):
        st.write(question)
    with st.chat_message("assistant"):
        try:
            with st.spinner("Thinking…"):
                ans = svc.ask(question, mode=mode, doc_ids=chosen or None)  # type: ignore[arg-type]
        except Exception as exc:
            st.error(str(exc))
            st.stop()
        st.markdown(ans.text)
        st.caption(f"**{ans.mode.upper()}** · {ans.route.reason}")
        for c in ans.citations:
            badge = "✅ verified" if c.verified else "⚠️ unverified"
            with st.expander(f"[{c.number}] {Path(c.source_path).name}, {where(c)} · {badge}"):
                st.markdown(f"> {c.quote}")
        u = ans.usage
        st.caption(
            f"{u.prompt_tokens} prompt + {u.completion_tokens} completion tokens · "
            f"{u.seconds:.1f} s · {ans.model}"
        )
