"""Streamlit front door: a thin UI over app/ (the logic lives in app/ui_*.py and app/service.py).

Run: streamlit run streamlit_app.py   (see docs/app.md)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import streamlit as st

from app.accounts import authenticate
from app.catalog import SAMPLES_DIR, load_catalog
from app.chats import ChatNotFound, title_from
from app.factories import build_embedder, build_generator
from app.llm.base import Generator
from app.locations import time_range
from app.safe_mode import allowed_server_path, safe_mode_on, token_ok
from app.settings import Settings
from app.ui import sources as src
from app.ui.asking import AskJob, reading_label
from app.ui.chat_json import chat_markdown, turn_from_json, turn_json
from app.ui.errors import Problem, explain, plain_failure
from app.ui.library import (
    MEDIA_SUFFIXES,
    UPLOAD_TYPES,
    DocRow,
    Draft,
    IngestStep,
    Library,
    Mode,
    Outcome,
    Turn,
    UIOptions,
    attach_media,
    attached_media,
    embedder_key,
    generator_key,
    library_key,
    save_upload,
)
from app.ui.reports import find_reports, read_table, split_images

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

MODE_LABELS = {"auto": "Auto", "rag": "RAG", "lc": "Long context"}
BACKEND_LABELS = {"llamacpp": "Embedded (llama.cpp)", "openai": "OpenAI-compatible server"}
TABS = ["Ask", "Compare", "Library", "Eval"]


# -- heavy resources: once per process, shared by every session ---------------------------
@st.cache_resource(show_spinner=False)
def get_embedder(key: str, _settings: Settings):
    return build_embedder(_settings)


@st.cache_resource(show_spinner=False)
def get_library(key: str, _settings: Settings) -> Library:
    return Library(_settings, embedder=get_embedder(embedder_key(_settings), _settings))


@st.cache_resource(show_spinner=False, max_entries=2)
def get_generator(key: str, _settings: Settings) -> Generator:
    return build_generator(_settings)


@st.cache_resource(show_spinner=False, max_entries=128)
def get_document(lib_key: str, doc_id: str, _lib: Library):
    return _lib.service.store.get_document(doc_id)


@st.cache_data(show_spinner=False, max_entries=256)
def page_image(path: str, mtime: float, page: int, quote: str) -> src.PageImage:
    return src.render_pdf_page(path, page, quote)


# -- small helpers ------------------------------------------------------------------------
def show_problem(p: Problem) -> None:
    st.error(f"**{src.md_text(p.message)}.** {src.md_text(p.fix)}".strip(), icon=":material/error:")


def session_settings(base: Settings) -> Settings | None:
    """The settings of this browser session: the config plus the sidebar's values."""
    opts = st.session_state["opts"]
    try:
        return opts.apply(base)
    except Exception as exc:
        show_problem(explain(exc, base))
        return None


def view_for(lib: Library, settings: Settings):
    """A service view answering with this session's model; loads the model once per process."""
    label = settings.llm.model if settings.llm.backend == "llamacpp" else settings.llm.base_url
    with st.spinner(f"Loading the model ({label})…"):
        gen = get_generator(generator_key(settings), settings)
    return lib.view(settings, gen)


def engine_caption(settings: Settings, model: str) -> str:
    """Which engine runs the local model here, and its speed as measured on this machine."""
    from app.llm.engine import engine_status
    from app.llm.llamacpp import measured_here

    line = engine_status(settings.llm.engine, settings.llm.engine_safe, settings.model_cache)
    spec = load_catalog().generators.get(model)
    got = measured_here(settings.model_cache).get(spec.file) if spec else None
    if got:
        line += f"; measured here: reads {got[1]:,.0f} tokens/s, writes {got[2]:,.1f}"
    return "Engine: " + line.removeprefix("engine: ")


def router_profile_caption(model: str) -> str:
    """Which model profile the router uses (a calibrated one in the data dir wins), and its date."""
    from app.catalog import catalog_params_b
    from app.routing.profiles import CALIBRATED_FILE, profile_caption
    from app.routing.router import model_profile

    calibrated = Path(Settings().data_dir) / CALIBRATED_FILE
    return profile_caption(model_profile(model, catalog_params_b(model), calibrated=calibrated))


def doc_names(rows: Sequence[DocRow]) -> dict[str, str]:
    return {r.doc_id: f"{r.name} ({r.kind}, {r.size.split(' · ')[0]})" for r in rows}


# -- sidebar: settings ------------------------------------------------------------------------
def model_widgets(defaults: UIOptions) -> tuple[str, str]:
    """The backend and model pickers (not in safe mode); returns (backend, model)."""
    state = st.session_state
    backend = st.radio(
        "LLM backend", list(BACKEND_LABELS), format_func=lambda b: BACKEND_LABELS[b], key="opt_backend"
    )
    if backend == "llamacpp":
        names = list(load_catalog().generators)
        if state["opt_model_local"] not in names:
            state["opt_model_local"] = defaults.model if defaults.model in names else names[0]
        model = st.selectbox("Model", names, key="opt_model_local", help="Models shipped as PyPI packages.")
        spec = load_catalog().generators[model]
        if "for tests" in spec.description:
            st.warning(
                f"{src.md_text(model)} is a tiny model for tests: its answers are often wrong. "
                "Pick another model for real questions.",
                icon=":material/science:",
            )
        st.caption(engine_caption(Settings(), model))
    else:
        st.text_input("Server URL", key="opt_base_url", help="e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama…)")
        model = st.text_input("Model name", key="opt_model_remote", help="The name the server expects.")
        st.text_input("API key", key="opt_api_key", type="password", help="Leave empty if none.")
    st.caption(router_profile_caption(model))
    return backend, model


def sign_out() -> None:
    for k in list(st.session_state):
        del st.session_state[k]
    st.query_params.clear()


def sidebar(base: Settings, safe: bool = False) -> None:
    defaults = UIOptions.from_settings(base)
    state = st.session_state
    state.setdefault("opt_backend", defaults.backend)
    state.setdefault("opt_model_local", defaults.model if defaults.backend == "llamacpp" else "")
    state.setdefault("opt_model_remote", defaults.model if defaults.backend == "openai" else "")
    state.setdefault("opt_base_url", defaults.base_url)
    state.setdefault("opt_api_key", defaults.api_key)
    state.setdefault("opt_top_k", defaults.top_k)
    state.setdefault("opt_max_tokens", defaults.max_tokens)
    state.setdefault("opt_budget", float(defaults.latency_budget_s))
    state.setdefault("opt_chunk_tokens", defaults.chunk_tokens)
    state.setdefault("opt_chunk_overlap", defaults.chunk_overlap)

    with st.sidebar:
        st.title("longqa")
        st.caption("Ask long documents; every answer shows where it comes from.")
        if state.get("user"):
            who, out = st.columns([3, 2], vertical_alignment="center")
            who.caption(f"Signed in as **{src.md_text(state['user'])}**")
            out.button("Sign out", key="sign_out", on_click=sign_out)
        st.subheader("Model")
        if safe:
            # Safe mode: the backend, its URL, key and model come from the server's configuration.
            backend, model = defaults.backend, defaults.model
            where = model if backend == "llamacpp" else f"{model} at {defaults.base_url}"
            st.caption(f"{BACKEND_LABELS.get(backend, backend)}: {src.md_text(where)} (fixed by the server)")
        else:
            backend, model = model_widgets(defaults)
        st.subheader("Answering")
        st.slider("Passages per RAG answer (top-k)", 1, 20, key="opt_top_k")
        st.number_input("Longest answer (tokens)", 16, 4096, step=16, key="opt_max_tokens")
        st.number_input(
            "Latency budget (s)",
            1.0,
            3600.0,
            step=10.0,
            key="opt_budget",
            help="Auto mode reads whole documents (LC) when that is predicted to take less than this; "
            "otherwise it retrieves passages (RAG).",
        )
        with st.expander("Chunking (documents ingested from now on)"):
            st.slider("Tokens per chunk", 32, 512, step=8, key="opt_chunk_tokens")
            st.slider("Overlap (tokens)", 0, 128, step=8, key="opt_chunk_overlap")
        st.caption(
            f"Embedder: {base.embedding.model} · data: {base.data_dir} · "
            f"settings apply to this browser tab only"
        )
    state["opts"] = UIOptions(
        backend=backend,
        model=model or "",
        base_url=defaults.base_url if safe else state["opt_base_url"],
        api_key=defaults.api_key if safe else state["opt_api_key"],
        max_tokens=int(state["opt_max_tokens"]),
        top_k=int(state["opt_top_k"]),
        chunk_tokens=int(state["opt_chunk_tokens"]),
        chunk_overlap=int(state["opt_chunk_overlap"]),
        latency_budget_s=float(state["opt_budget"]),
    )


# -- citations -----------------------------------------------------------------------------
def citation_panel(lib: Library, lib_key: str, c, turn: int, prefix: str) -> None:
    with st.container(border=True):
        st.markdown(f'<div id="{src.anchor_id(turn, c.number, prefix)}"></div>', unsafe_allow_html=True)
        head, badge = st.columns([5, 1], vertical_alignment="center")
        head.markdown(
            f"**\\[{c.number}\\] {src.md_text(Path(c.source_path).name)}** · {src.location_label(c)}"
        )
        with badge:
            if c.verified:
                st.badge("verified", icon=":material/check:", color="green")
            else:
                st.badge("unverified", icon=":material/warning:", color="orange")
        st.caption(src.explain_status(c))
        try:
            doc = get_document(lib_key, c.doc_id, lib)
        except Exception:
            st.info("This document is no longer in the library; the quote was:")
            st.markdown(f"> {src.md_text(c.quote)}")
            return
        if doc.media_type == "pdf" and c.pages:
            text_col, page_col = st.columns([1, 1])
            with text_col:
                st.markdown(src.passage(doc.text, c.span).to_html(reflow=True), unsafe_allow_html=True)
            with page_col:
                pdf_page(c.source_path, c.pages[0], c.quote)
            key = f"{prefix}_{turn}_{c.number}"
            if st.toggle("Open in the document viewer (zoom, other pages)", key=f"viewer_{key}"):
                pdf_viewer_block(c.source_path, c.pages[0], c.quote, key)
        elif doc.segments and c.time:
            st.markdown(f"**{time_range(c.time, typeset=True)}**")
            transcript_block(lib, doc, c, f"{prefix}_{turn}_{c.number}")
        else:
            st.markdown(src.passage(doc.text, c.span).to_html(), unsafe_allow_html=True)


def play_from(key: str, start: float) -> None:
    st.session_state[f"play_{key}"] = start


def transcript_block(lib: Library, doc, c, key: str) -> None:  # type: ignore[no-untyped-def]
    """The cited cues among their neighbours. With the recording at hand (attached in the
    Library tab, or beside the transcript), each cue's time is a button that plays it from that
    second; the player starts at the citation."""
    lines = src.cue_lines(doc, c.span)
    media = src.find_media(c.source_path, attached_media(lib.settings.data_dir, c.doc_id))
    if media is None:
        st.markdown(src.cues_html(lines), unsafe_allow_html=True)
        st.caption(
            "No recording for this transcript, so its times cannot be played: attach the audio or "
            "video in the Library tab (Attach a recording)."
        )
        return
    chosen = st.session_state.get(f"play_{key}")
    for i, line in enumerate(lines):
        t, body = st.columns([1, 7], vertical_alignment="center")
        t.button(
            f"▶ {line.label}",
            key=f"cue_{key}_{i}",
            type="tertiary",
            help=f"Play from {line.label}",
            on_click=play_from,
            args=(key, line.start),
        )
        text = src.md_text(line.text.replace("\n", " "))
        body.markdown(f":orange-background[{text}]" if line.cited else text)
    start = int(chosen if chosen is not None else c.time[0])
    st.caption(
        f"Playing from {src.fmt_time(start)}" if chosen is not None else "Click a time to play from it."
    )
    if media.kind == "video":
        st.video(str(media.path), start_time=start, autoplay=chosen is not None)
    else:
        st.audio(str(media.path), start_time=start, autoplay=chosen is not None)


def pdf_page(path: str, page: int, quote: str) -> None:
    p = Path(path)
    try:
        img = page_image(str(p), p.stat().st_mtime if p.exists() else 0.0, page, quote)
    except Exception as exc:
        st.caption(str(explain(exc)))
        return
    if img.closeup is not None:
        st.image(
            img.closeup, caption=f"Page {page} of {img.n_pages}, cited words highlighted", width="stretch"
        )
    else:
        st.caption(f"The cited words could not be located on page {page}; the whole page is shown.")
    with st.expander(f"Whole page {page}", expanded=img.closeup is None):
        st.image(img.png, width="stretch")


@st.cache_data(show_spinner=False, max_entries=64)
def page_window(path: str, mtime: float, page: int, quote: str, cited: int) -> src.PageWindow:
    return src.page_window(path, page, quote, cited)


def goto(nav_key: str, page: int, n_pages: int | None = None) -> None:
    st.session_state[nav_key] = max(1, page if n_pages is None else min(page, n_pages))


def pdf_viewer_block(path: str, cited: int, quote: str, key: str) -> None:
    """The PDF in a pdf.js viewer (streamlit-pdf-viewer): the cited page with the cited words
    boxed, its neighbours, zoom controls and text selection; a page field moves through the
    document a few pages at a time (only those pages are sent to the browser)."""
    from streamlit_pdf_viewer import pdf_viewer

    p = Path(path)
    nav_key = f"page_{key}"
    st.session_state.setdefault(nav_key, cited)
    try:
        win = page_window(
            str(p), p.stat().st_mtime if p.exists() else 0.0, st.session_state[nav_key], quote, cited
        )
    except Exception as exc:
        st.caption(str(explain(exc)))
        return
    left, mid, right, back = st.columns([1, 2, 1, 2], vertical_alignment="bottom")
    left.button(
        "◀ Previous", key=f"prev_{key}", disabled=win.first <= 1, on_click=goto, args=(nav_key, win.first - 3)
    )
    mid.number_input(f"Page (of {win.n_pages})", 1, win.n_pages, key=nav_key)
    right.button(
        "Next ▶",
        key=f"next_{key}",
        disabled=win.last >= win.n_pages,
        on_click=goto,
        args=(nav_key, win.last + 3, win.n_pages),
    )
    back.button(
        f"Back to the cited page {cited}",
        key=f"cited_{key}",
        disabled=win.first <= cited <= win.last,
        on_click=goto,
        args=(nav_key, cited),
    )
    st.caption(
        f"Pages {win.first}–{win.last} of {win.n_pages}"
        + (f"; the cited words are boxed on page {cited}." if win.boxes else ".")
        + " Use the viewer's zoom buttons, or select text to copy it."
    )
    shown = st.session_state[nav_key]
    pdf_viewer(
        win.pdf,
        key=f"pdf_{key}_{win.first}",
        height=900,
        annotations=[
            {"page": pg, "x": x, "y": y, "width": w, "height": h, "color": "#e8a400", "border": "solid"}
            for pg, x, y, w, h in win.boxes
        ],
        annotation_outline_size=2,
        render_text=True,
        scroll_to_page=min(max(shown, win.first), win.last) - win.first + 1,
        scroll_behavior="instant",
        show_page_separator=True,
    )


def route_line(route, container=None) -> None:  # type: ignore[no-untyped-def]
    """The mode badge and the router's reason (or what the user forced), in words."""
    where = container if container is not None else st
    cols = where.columns([1, 8], vertical_alignment="center")
    with cols[0]:
        st.badge(route.mode.upper(), color="blue" if route.mode == "rag" else "violet")
    how = "reads the passages best matching the question" if route.mode == "rag" else "reads documents whole"
    cols[1].caption(("Forced: " if route.forced else "Router: ") + route.reason + f" ({how})")


def draft_box(draft: Draft, fate: str) -> None:
    """A draft shown before the answer was checked: it stays, marked, with the reason."""
    with st.container(border=True):
        st.caption(f":material/pending: **First draft, {fate}.** {src.md_text(draft.reason)}.")
        st.markdown(src.md_text(draft.text))


def grounding_banner(text: str, citations) -> src.Grounding:  # type: ignore[no-untyped-def]
    g = src.grounding(text, citations)
    if g.kind == "not_found":
        st.info(g.banner, icon=":material/search_off:")
    elif g.kind in ("none", "unverified"):
        st.warning(g.banner, icon=":material/report:")
    return g


def answer_block(
    lib: Library,
    lib_key: str,
    out: Outcome,
    turn: int,
    prefix: str = "src",
    drafts: Sequence[Draft] = (),
    partial: str = "",
    route=None,  # type: ignore[no-untyped-def]
) -> None:
    if out.stopped:
        if route is not None:
            route_line(route)
        for d in drafts:
            draft_box(d, "not checked (stopped)")
        if partial.strip():
            st.markdown(src.md_text(partial.strip()) + " …")
        st.warning(
            f"Stopped after {out.seconds:.1f} s; the model's work was ended. "
            "The text above is unfinished and its sources were not checked.",
            icon=":material/stop_circle:",
        )
        return
    if out.problem is not None:
        show_problem(out.problem)
        return
    ans = out.answer
    assert ans is not None
    for d in drafts:
        fate = (
            "kept after a second look"
            if ans.first_draft is not None and ans.first_draft.kept and len(drafts) == 1
            else "replaced by the answer below"
        )
        draft_box(d, fate)
    known = {c.number for c in ans.citations}
    g = grounding_banner(ans.text, ans.citations)
    st.markdown(src.link_markers(ans.text, turn, known, prefix))
    if ans.cut_off:
        st.warning(ans.cut_off_note, icon=":material/content_cut:")
    route_line(ans.route)
    u = ans.usage
    st.caption(
        f"{u.prompt_tokens:,} prompt + {u.completion_tokens:,} completion tokens · {u.seconds:.1f} s · "
        f"{ans.model}"
        + (f" on {u.engine} ({u.prefill_tokens_per_s:,.0f} tok/s reading)" if u.engine else "")
        + f" · {g.verified}/{g.total} citations verified"
        + (f" · {ans.retrieval}" if ans.retrieval else "")
    )
    if g.orphans:
        nums = ", ".join(f"\\[{n}\\]" for n in g.orphans)
        st.caption(f"{nums} in the answer point to no passage of your documents (the model made them up).")
    if ans.citations:
        with st.expander(f"Sources ({len(ans.citations)}: {g.verified} verified)", expanded=True):
            for c in ans.citations:
                citation_panel(lib, lib_key, c, turn, prefix)
    draft = ans.first_draft
    if draft is not None and not drafts:
        fate = "kept after a second look" if draft.kept else "replaced by the answer above"
        ok = sum(c.verified for c in draft.citations)
        with st.expander(f"First draft ({fate}: {ok}/{len(draft.citations)} citations verified)"):
            st.markdown(src.md_text(draft.text))


def turn_block(lib: Library, lib_key: str, turn: Turn, i: int) -> None:
    answer_block(lib, lib_key, turn.outcome, i, drafts=turn.drafts, partial=turn.partial, route=turn.route)


# -- tabs -----------------------------------------------------------------------------------
def follow(job: AskJob, stop_key: str) -> None:
    """Show a question in flight until it ends: the route once decided, reading progress with
    an estimate from the measured speed, drafts being checked, the answer as it streams, and a
    Stop button. A click on Stop reruns the page: Streamlit raises in here, and ``finally``
    stops the model's work."""
    route_box = st.empty()  # st.empty slots: cleared when the answer is complete
    drafts_box = st.empty()
    status = st.empty()
    preview = st.empty()
    stop_box = st.empty()
    stop_box.button(
        "Stop",
        key=stop_key,
        help="Stop the model now (its work ends within a second); what it wrote so far stays.",
    )
    route_shown = None
    n_drafts = 0
    try:
        while True:
            finished = job.wait(0.25)
            route = job.route
            if route is not None and route is not route_shown:
                with route_box.container():
                    route_line(route)
                route_shown = route
            if n_drafts < len(job.drafts):
                n_drafts = len(job.drafts)
                with drafts_box.container():
                    for d in job.drafts[:n_drafts]:
                        draft_box(d, "being checked")
            text, p = job.text, job.prefill
            if text:
                status.empty()
                preview.markdown(src.md_text(text) + " ▌")
            elif p is not None and not p.finished:
                preview.empty()
                status.progress(p.fraction, text=reading_label(p))
            else:
                what = "Finding the passages and choosing how to answer" if route is None else "Starting"
                status.caption(f"{what}… {job.elapsed_s:.0f} s")
            if finished:
                break
    finally:
        if not job.finished:
            job.stop()  # the user clicked Stop (or left): end the model's work now
    route_box.empty()
    drafts_box.empty()
    status.empty()
    preview.empty()
    stop_box.empty()


# -- saved chats --------------------------------------------------------------------------
def me() -> str:
    """The signed-in user ("" without accounts: everything belongs to the shared library)."""
    return st.session_state.get("user", "")


def current_chat(lib: Library) -> list[Turn]:
    """This tab's conversation: the one in the session, else the saved chat the address names
    (``?chat=<id>``: a refresh or a restart reopens it), else a new one."""
    state = st.session_state
    if "chat" not in state:
        turns: list[Turn] = []
        wanted = st.query_params.get("chat")
        if wanted:
            try:
                turns = [turn_from_json(d) for d in lib.chats.turns(wanted, me())]
                state["chat_id"] = wanted
            except ChatNotFound:
                st.query_params.pop("chat", None)
            except Exception as exc:
                show_problem(explain(exc))
        state["chat"] = turns
    cid = state.get("chat_id")
    if cid and st.query_params.get("chat") != cid:
        st.query_params["chat"] = cid
    return state["chat"]


def saver(lib: Library, state) -> Callable[[Turn], None]:  # noqa: ANN001 - Streamlit's session state
    """Saves a turn to the session's chat (created with the first question as its title). Runs
    once per turn, possibly from the next page run (``AskJob.record``), so it touches only the
    database and the session state."""

    owner = state.get("user", "")

    def save(turn: Turn) -> None:
        try:
            cid = state.get("chat_id")
            if cid is None:
                cid = lib.chats.create(title_from(turn.question), owner).id
                state["chat_id"] = cid
            lib.chats.add_turn(cid, turn_json(turn), owner)
        except Exception as exc:
            state["save_problem"] = explain(exc)

    return save


def open_chat(lib: Library) -> None:
    """The saved-chats list's callback: load the picked chat into this session."""
    state = st.session_state
    cid = state.get("chat_pick")
    if not cid or cid == state.get("chat_id"):
        return
    state.pop("inflight", None)
    try:
        state["chat"] = [turn_from_json(d) for d in lib.chats.turns(cid, me())]
        state["chat_id"] = cid
        st.query_params["chat"] = cid
    except ChatNotFound:
        state["save_problem"] = Problem(
            "That chat no longer exists", "It was deleted, perhaps in another tab."
        )


def new_chat() -> None:
    state = st.session_state
    for k in ("chat", "chat_id", "chat_pick"):
        state.pop(k, None)
    st.query_params.pop("chat", None)


def chats_panel(lib: Library) -> None:
    """Sidebar: new chat, the saved chats (latest first), and for the open one rename, export
    as Markdown with its citations, and delete (asked twice)."""
    state = st.session_state
    try:
        chats = lib.chats.list(me())
    except Exception as exc:
        show_problem(explain(exc))
        return
    cid = state.get("chat_id")
    st.subheader("Chats")
    st.button(
        "New chat",
        icon=":material/add_comment:",
        key="chat_new",
        on_click=new_chat,
        disabled=not state.get("chat"),
    )
    if not chats:
        st.caption("Your questions and answers are saved here.")
        return
    by_id = {c.id: c for c in chats}
    state["chat_pick"] = cid if cid in by_id else None
    st.radio(
        "Saved chats",
        list(by_id),
        format_func=lambda i: (
            f"{src.md_text(by_id[i].title)} · "
            f"{time.strftime('%d %b %H:%M', time.localtime(by_id[i].updated))}"
        ),
        key="chat_pick",
        on_change=open_chat,
        args=(lib,),
        label_visibility="collapsed",
    )
    if cid not in by_id:
        return
    info = by_id[cid]
    with st.popover("This chat", icon=":material/more_horiz:", use_container_width=True):
        title = st.text_input("Title", value=info.title, key=f"chat_title_{cid}", max_chars=120)
        if st.button("Rename", key=f"chat_rename_{cid}") and title.strip() and title != info.title:
            lib.chats.rename(cid, title, me())
            st.rerun()
        st.download_button(
            "Export as Markdown",
            chat_markdown(info.title, state.get("chat", [])),
            file_name=export_name(info.title),
            mime="text/markdown",
            icon=":material/download:",
            key=f"chat_export_{cid}",
        )
        sure = st.checkbox("Delete this chat…", key=f"chat_del_ask_{cid}")
        if sure and st.button("Delete it for good", type="primary", key=f"chat_del_{cid}"):
            lib.chats.delete(cid, me())
            new_chat()
            st.rerun()


def export_name(title: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"{slug[:60] or 'chat'}.md"


def use_collection(by_id: dict) -> None:  # type: ignore[type-arg]
    cid = st.session_state.get("collection")
    if cid in by_id:
        st.session_state["scope"] = list(by_id[cid].doc_ids)


def collection_picker(lib: Library, existing: set[str]) -> None:
    """Ask over a collection: picking one fills *Documents* with its documents."""
    try:
        found = lib.collections.visible(me(), existing)
    except Exception as exc:
        show_problem(explain(exc))
        return
    if not found:
        return
    by_id = {c.id: c for c in found}
    user = me()
    st.selectbox(
        "Collection",
        list(by_id),
        index=None,
        format_func=lambda i: f"{by_id[i].label(user)} ({len(by_id[i].doc_ids)} documents)",
        placeholder="Choose a collection to ask over its documents",
        key="collection",
        on_change=use_collection,
        args=(by_id,),
    )


def collections_block(lib: Library, names: dict[str, str]) -> None:
    """Library tab: make a collection from chosen documents (shared with every user or not),
    and delete your own."""
    with st.expander("Collections"):
        try:
            mine = [c for c in lib.collections.visible(me(), set(names)) if c.owner == me()]
        except Exception as exc:
            show_problem(explain(exc))
            return
        state = st.session_state
        state.setdefault("coll_round", 0)
        r = state["coll_round"]
        name = st.text_input("Name", key=f"coll_name_{r}", max_chars=120)
        docs = st.multiselect("Documents", list(names), format_func=lambda d: names[d], key=f"coll_docs_{r}")
        shared = st.checkbox("Shared with every user", key=f"coll_shared_{r}")
        if st.button("Save collection", disabled=not (name.strip() and docs), key=f"coll_save_{r}"):
            lib.collections.save(name, docs, me(), shared)
            state["coll_round"] += 1
            st.toast(f"Collection '{name.strip()}' saved with {len(docs)} documents.")
            st.rerun()
        for c in mine:
            left, right = st.columns([5, 1], vertical_alignment="center")
            left.markdown(
                f"**{src.md_text(c.name)}** · {len(c.doc_ids)} documents" + (" · shared" if c.shared else "")
            )
            if right.button("Delete", key=f"coll_del_{c.id}"):
                lib.collections.delete(c.id, me())
                st.rerun()


def ask_tab(lib: Library, lib_key: str, base: Settings) -> None:
    rows = lib.ready()
    if not rows:
        empty_library(lib, base)
        # Saved chats stay readable with every document gone (their sources show the quotes).
        past_turns(lib, lib_key, current_chat(lib))
        with st.sidebar:
            chats_panel(lib)
        return
    names = doc_names(rows)
    collection_picker(lib, set(names))
    left, right = st.columns([3, 2])
    scope = left.multiselect(
        "Documents", list(names), format_func=lambda d: names[d], placeholder="All documents", key="scope"
    )
    picked = right.segmented_control(
        "Mode",
        list(MODE_LABELS),
        format_func=lambda m: MODE_LABELS[m],
        default="auto",
        required=True,
        key="mode",
    )
    mode: Mode = "rag" if picked == "rag" else "lc" if picked == "lc" else "auto"
    chat = current_chat(lib)
    save = saver(lib, st.session_state)
    inflight: AskJob | None = st.session_state.pop("inflight", None)
    if inflight is not None:
        # This run interrupted the one that was answering (Stop, or any other click: Streamlit
        # stops the old run and starts this one at once, so it may not have recorded its turn yet).
        if not inflight.finished:
            inflight.stop()
        inflight.record(chat, save)
    panel = st.sidebar.container()  # filled last, so a chat saved by this run is listed
    conversation_view(lib, lib_key, base, chat, save, scope, mode)
    with panel:
        chats_panel(lib)


def past_turns(lib: Library, lib_key: str, chat: list[Turn]) -> None:
    for i, turn in enumerate(chat):
        with st.chat_message("user"):
            st.markdown(src.md_text(turn.question))
        with st.chat_message("assistant"):
            turn_block(lib, lib_key, turn, i)


def conversation_view(  # type: ignore[no-untyped-def]
    lib: Library, lib_key: str, base: Settings, chat: list[Turn], save, scope, mode: Mode
) -> None:
    """The conversation so far, and the question being asked (if any) as it is answered."""
    problem = st.session_state.pop("save_problem", None)
    if problem is not None:
        st.warning(f"The chat could not be saved: {src.md_text(str(problem))}", icon=":material/warning:")
    conversation = st.container()  # above the input, so the input stays at the bottom
    question = st.chat_input("Ask a question about your documents", key="question")
    with conversation:
        past_turns(lib, lib_key, chat)
        if not question:
            return
        with st.chat_message("user"):
            st.markdown(src.md_text(question))
        with st.chat_message("assistant"):
            settings = session_settings(base)
            if settings is None:
                return
            try:
                view = view_for(lib, settings)
            except Exception as exc:
                out = Outcome(None, explain(exc, settings), 0.0, mode)
                chat.append(Turn(question, mode, tuple(scope), out))
                save(chat[-1])
                answer_block(lib, lib_key, out, len(chat) - 1)
                return
            job = AskJob(lib, view, question, mode, scope).start()
            st.session_state["inflight"] = job
            try:
                follow(job, f"stop_{len(chat)}")
            finally:
                # Recorded even when Stop reran the page mid-answer (once: see AskJob.record).
                turn = job.record(chat, save)
            if st.session_state.get("inflight") is job:
                del st.session_state["inflight"]
            turn_block(lib, lib_key, turn, chat.index(turn))


def compare_tab(lib: Library, lib_key: str, base: Settings) -> None:
    rows = lib.ready()
    if not rows:
        empty_library(lib, base, key="cmp_samples")
        return
    st.markdown("The same question answered with retrieval (RAG) and with whole documents (LC).")
    names = doc_names(rows)
    with st.form("compare"):
        question = st.text_input("Question", key="cmp_question")
        scope = st.multiselect(
            "Documents",
            list(names),
            format_func=lambda d: names[d],
            placeholder="All documents",
            key="cmp_scope",
        )
        go = st.form_submit_button("Compare RAG and LC", type="primary")
    if go and question.strip():
        settings = session_settings(base)
        if settings is None:
            return
        try:
            view = view_for(lib, settings)
        except Exception as exc:
            show_problem(explain(exc, settings))
            return
        results = []
        live = st.columns(2)
        for col, mode in zip(live, ("rag", "lc")):
            # One side after the other (one engine), each streamed with its Stop button.
            with col:
                st.subheader(MODE_LABELS[mode])
                job = AskJob(lib, view, question, mode, scope).start()
                try:
                    follow(job, f"cmp_stop_{mode}")
                finally:
                    if not job.finished:
                        job.stop()
                turn = job.record([])
                results.append(turn.outcome)
        st.session_state["comparison"] = (question, results)
        st.rerun()  # show the finished comparison in place of the live columns
    elif go:
        st.warning("Type a question first.")
    if "comparison" not in st.session_state:
        return
    question, results = st.session_state["comparison"]
    st.markdown(f"#### {src.md_text(question)}")
    table = []
    for out in results:
        a = out.answer
        table.append(
            {
                "mode": MODE_LABELS[out.mode],
                "seconds": round(out.seconds, 2),
                "prompt tokens": a.usage.prompt_tokens if a else None,
                "completion tokens": a.usage.completion_tokens if a else None,
                "citations verified": f"{sum(c.verified for c in a.citations)}/{len(a.citations)}"
                if a
                else "–",
                "status": "answered" if a else "stopped" if out.stopped else "failed",
            }
        )
    st.dataframe(table, hide_index=True)
    for col, out in zip(st.columns(2), results):
        with col:
            st.subheader(MODE_LABELS[out.mode])
            if out.answer is not None:
                m1, m2 = st.columns(2)
                m1.metric("Time", f"{out.seconds:.1f} s")
                m2.metric(
                    "Tokens", f"{out.answer.usage.prompt_tokens + out.answer.usage.completion_tokens:,}"
                )
            answer_block(lib, lib_key, out, 0, prefix=f"cmp-{out.mode}")


def empty_library(lib: Library, base: Settings, key: str = "samples") -> None:
    st.info(
        "The library is empty. Add documents on the **Library** tab, or start with the two bundled "
        "samples (a 5-page PDF about word processors and a story excerpt)."
    )
    if st.button("Load the sample documents", key=key, type="primary"):
        run_ingest(lib, base, [SAMPLES_DIR])
        st.rerun()


def run_ingest(lib: Library, base: Settings, paths: list[Path]) -> None:
    settings = session_settings(base)
    if settings is None:
        return
    bar = st.progress(0.0, text="Starting…")

    def on_progress(step: IngestStep) -> None:
        bar.progress(step.fraction, text=src.md_text(step.label()))

    t0 = time.perf_counter()
    try:
        with st.spinner("Ingesting (the embedder loads on first use)…"):
            report = lib.ingest(settings, paths, on_progress)
    except Exception as exc:
        bar.empty()
        show_problem(explain(exc, settings))
        return
    bar.progress(1.0, text=f"Finished in {time.perf_counter() - t0:.1f} s")
    st.session_state["last_ingest"] = report


def library_tab(lib: Library, base: Settings, safe: bool = False) -> None:
    state = st.session_state
    state.setdefault("upload_round", 0)
    st.subheader("Add documents")
    up_col, dir_col = st.columns(2)
    with up_col:
        uploads = st.file_uploader(
            "Upload files",
            type=UPLOAD_TYPES,
            accept_multiple_files=True,
            key=f"uploads_{state['upload_round']}",
        )
        if st.button("Ingest uploaded files", disabled=not uploads, type="primary"):
            folder = base.data_dir / "uploads"
            try:
                paths = [save_upload(folder, f.name, f.getvalue()) for f in uploads or []]
            except Exception as exc:
                show_problem(explain(exc, base))
            else:
                run_ingest(lib, base, paths)
                state["upload_round"] += 1
    with dir_col:
        roots = base.app.roots if safe else []
        if safe and not roots:
            st.caption("Ingesting from folders on the server is off in safe mode; upload files instead.")
        folder_text = (
            st.text_input("Folder or file on the server", key="server_path", placeholder="/data/reports")
            if not safe or roots
            else ""
        )
        if (not safe or roots) and st.button("Ingest from the server", disabled=not folder_text.strip()):
            target = Path(folder_text.strip()).expanduser()
            if safe and not allowed_server_path(target, roots):
                show_problem(outside_roots(target, roots))
            elif not target.exists():
                show_problem(
                    Problem(
                        f"There is no file or folder '{target}' on the server",
                        "Check the path; it is read on the server, not on your computer.",
                    )
                )
            else:
                run_ingest(lib, base, [target])
        if st.button("Load the sample documents", key="lib_samples"):
            run_ingest(lib, base, [SAMPLES_DIR])
    report = state.get("last_ingest")
    if report is not None:
        (st.success if not report.failed else st.warning)(f"Last ingest: {report.summary()}")
        for path, why in report.failed:
            st.error(
                f"**{src.md_text(Path(path).name)}**: {src.md_text(plain_failure(str(path), why))}",
                icon=":material/error:",
            )
        for path, warning in report.warnings:
            st.warning(
                f"**{src.md_text(Path(path).name)}**: {src.md_text(plain_failure(str(path), warning))}"
            )

    st.subheader("Library")
    rows = lib.rows()
    if not rows:
        st.caption("Nothing ingested yet.")
        return
    st.dataframe(
        [
            {
                "name": r.name,
                "kind": r.kind,
                "size": r.size,
                "chunks": r.chunks,
                "status": r.status,
                "warnings": r.warnings,
                "ingested": r.ingested_at,
                "id": r.doc_id,
            }
            for r in rows
        ],
        hide_index=True,
        width="stretch",
        column_config={
            "name": st.column_config.TextColumn("name", width="large"),
            "warnings": st.column_config.TextColumn("warnings", width="large"),
            "id": st.column_config.TextColumn("id", width="small"),
        },
    )
    names = {r.doc_id: f"{r.name} ({r.doc_id[:8]})" for r in rows}
    collections_block(lib, names)
    attach_block(lib, base, [r for r in rows if r.kind == "transcript"], names)
    delete_block(lib, base, names)


def attach_block(lib: Library, base: Settings, transcripts: Sequence[DocRow], names: dict[str, str]) -> None:
    """Attach the audio or video a transcript was made from, so its times play in answers."""
    if not transcripts:
        return
    with st.expander("Attach a recording to a transcript"):
        doc_id = st.selectbox(
            "Transcript", [r.doc_id for r in transcripts], format_func=lambda d: names[d], key="attach_doc"
        )
        have = attached_media(base.data_dir, doc_id) if doc_id else []
        if have:
            st.caption(f"Attached now: {src.md_text(have[0].suffix[1:])} recording (a new one replaces it).")
        state = st.session_state
        state.setdefault("attach_round", 0)
        up = st.file_uploader(
            "Audio or video",
            type=[s[1:] for s in MEDIA_SUFFIXES],
            key=f"attach_file_{state['attach_round']}",
        )
        if st.button("Attach", disabled=up is None or not doc_id, key="attach_go"):
            try:
                attach_media(base.data_dir, doc_id, up.name, up.getvalue())  # type: ignore[union-attr]
            except Exception as exc:
                show_problem(explain(exc, base))
            else:
                state["attach_round"] += 1
                st.toast(f"Attached to {names[doc_id]}: its times now play in answers.")
                st.rerun()


def delete_block(lib: Library, base: Settings, names: dict[str, str]) -> None:
    """Delete documents, asked twice; the app's own copies of their files go too (uploads and
    attached recordings under the data folder), never files elsewhere on the server."""
    state = st.session_state
    doomed = st.multiselect(
        "Remove from the library", list(names), format_func=lambda d: names[d], key="doomed"
    )
    files_too = st.checkbox(
        "Also delete the uploaded files and attached recordings (files you ingested from a server "
        "folder are never deleted)",
        value=True,
        key="doomed_files",
    )
    asked = st.button(f"Delete {len(doomed)} document(s)…", disabled=not doomed, key="delete_ask")
    if not asked and not state.get("delete_confirm"):
        return
    state["delete_confirm"] = True
    with st.container(border=True):
        listed = ", ".join(names[d] for d in doomed)
        st.warning(
            f"Delete {len(doomed)} document(s) for everyone using this library: {src.md_text(listed)}? "
            "Answers already given keep their quotes, but their sources can no longer be opened.",
            icon=":material/delete:",
        )
        yes, no = st.columns(2)
        if no.button("Cancel", key="delete_no"):
            state.pop("delete_confirm", None)
            st.rerun()
        if yes.button("Yes, delete", type="primary", key="delete_yes", disabled=not doomed):
            state.pop("delete_confirm", None)
            try:
                gone = lib.delete(doomed, files_under=base.data_dir if files_too else None)
            except Exception as exc:
                show_problem(explain(exc, base))
                return
            get_document.clear()  # answers already given must not open what was deleted
            for k in ("scope", "doomed", "last_ingest"):
                state.pop(k, None)
            files = f" and {len(gone.files)} file(s) from the server" if gone.files else ""
            st.toast(f"Deleted {gone.documents} document(s), their {gone.passages} passages{files}.")
            st.rerun()


def outside_roots(target: Path, roots: Sequence[Path]) -> Problem:
    return Problem(
        f"'{target}' is outside the folders this app may read in safe mode",
        "Pick a path under " + ", ".join(f"'{r}'" for r in roots) + " (setting app.roots).",
    )


def eval_tab(base: Settings, safe: bool = False) -> None:
    st.markdown("Reports written by the eval harness: plots, tables and summaries.")
    if safe and not base.app.roots:
        st.info("Report folders on the server are off in safe mode (no app.roots configured).")
        return
    default = next(
        (str(p) for p in (base.data_dir / "reports", Path("reports"), Path("artifacts")) if p.is_dir()),
        str(base.data_dir / "reports"),
    )
    root = st.text_input("Report folder on the server", value=default, key="report_root")
    if safe and not allowed_server_path(Path(root), base.app.roots):
        show_problem(outside_roots(Path(root), base.app.roots))
        return
    reports = find_reports([Path(root).expanduser()])
    if not reports:
        st.info(f"No report found under '{root}'. Run the eval harness and point this at its output folder.")
        return
    chosen = st.selectbox(
        "Report",
        reports,
        format_func=lambda r: f"{r.name} ({time.strftime('%Y-%m-%d %H:%M', time.localtime(r.modified))})",
    )
    shown: set[Path] = set()  # images a Markdown file put in its text are not shown again
    for f in chosen.files:
        try:
            if f.kind == "markdown":
                text = f.path.read_text(encoding="utf-8", errors="replace")
                for piece in split_images(text, f.path.parent):
                    if isinstance(piece, str):
                        st.markdown(piece)
                    else:
                        st.image(str(piece.path), caption=piece.alt or piece.path.name)
                        shown.add(piece.path)
            elif f.kind == "image":
                if f.path.resolve() in shown:
                    continue
                st.image(str(f.path), caption=f.path.name)
            elif f.kind == "table":
                st.markdown(f"**{f.path.name}**")
                st.dataframe(read_table(f.path), hide_index=True)
            elif f.kind == "json":
                with st.expander(f.path.name):
                    st.json(f.path.read_text(encoding="utf-8"))
            elif f.kind == "html":
                with st.expander(f.path.name, expanded=len(chosen.files) == 1):
                    st.components.v1.html(f.path.read_text(encoding="utf-8"), height=600, scrolling=True)
            else:
                with st.expander(f.path.name):
                    st.code(f.path.read_text(encoding="utf-8", errors="replace")[:20000])
        except Exception as exc:
            st.warning(f"{src.md_text(f.path.name)}: {src.md_text(str(explain(exc)))}")


# -- page ------------------------------------------------------------------------------------
def login(base: Settings) -> bool:
    """The gate: with accounts (``app.users``) a name and password, else in safe mode the
    configured access token; typed once per browser session."""
    state = st.session_state
    if state.get("authed"):
        return True
    if base.app.users:
        st.title("longqa")
        with st.form("login"):
            name = st.text_input("User name", key="login_name")
            password = st.text_input("Password", type="password", key="login_password")
            go = st.form_submit_button("Sign in", type="primary")
        if go:
            user = authenticate(base.app.users, name, password)
            if user is None:
                st.error("Wrong user name or password.", icon=":material/lock:")
                return False
            state["authed"], state["user"] = True, user
            for k in ("chat", "chat_id", "chat_pick"):
                state.pop(k, None)
            st.rerun()
        return False
    st.title("longqa")
    if not base.app.token:
        show_problem(
            Problem(
                "Safe mode is on (the app is reachable from other machines) but no access token is set",
                "Set LONGQA_APP__TOKEN on the server, or bind the app to 127.0.0.1 (server.address).",
            )
        )
        return False
    given = st.text_input("Access token", type="password", key="login_token")
    if given and token_ok(given, base.app.token):
        state["authed"] = True
        del state["login_token"]
        st.rerun()
    if given:
        st.error("Wrong access token.", icon=":material/lock:")
    return False


def main() -> None:
    st.set_page_config(page_title="longqa · ask long documents", page_icon="📚", layout="wide")
    base = Settings()  # type: ignore[call-arg]  # pydantic-settings fills it
    safe = safe_mode_on(base.app, st.get_option("server.address"))
    if (safe or base.app.users) and not login(base):
        return
    sidebar(base, safe)
    key = library_key(base)
    with st.spinner("Opening the library…"):
        lib = get_library(key, base)
    ask, compare, library, evals = st.tabs(TABS, key="tab", on_change="rerun")
    if ask.open:
        with ask:
            ask_tab(lib, key, base)
    if compare.open:
        with compare:
            compare_tab(lib, key, base)
    if library.open:
        with library:
            library_tab(lib, base, safe)
    if evals.open:
        with evals:
            eval_tab(base, safe)


try:
    main()
except Exception as exc:  # a friendly message with the fix, never a stack trace
    show_problem(explain(exc))
