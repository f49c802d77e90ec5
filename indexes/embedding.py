"""Embedders: text in, L2-normalised float32 vectors out.

A sentence-transformers encoder reads at most ``max_seq_length`` tokens and drops
the rest silently (all-MiniLM-L6-v2: 256 wordpieces). ``long_text`` says what
happens to a longer text instead:

- ``"windows"`` (default): embed it in overlapping windows the encoder reads
  whole and average them (``embed``), or keep every window (``embed_multi``, for
  an index that scores a chunk by its best window);
- ``"truncate"``: the encoder's own behaviour, with a warning naming how many
  texts lost their end.

``extend_to`` stretches the encoder's window without training (LongEmbed):
position interpolation for absolute-position encoders, NTK-aware rotary scaling
for RoPE encoders (``indexes.long_context``). ``embed_spans`` is late chunking:
the whole document goes through the encoder in long windows and each chunk is
the mean of its own tokens' contextual vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from indexes.windows import MultiVectors, token_windows

log = logging.getLogger(__name__)

LongText = Literal["windows", "truncate"]


class Embedder(Protocol):
    name: str
    dim: int
    max_tokens: int
    tokenizer_dir: str

    def embed(self, texts: Sequence[str], *, is_query: bool = False) -> np.ndarray:
        """Vectors of shape (len(texts), dim), float32, unit length."""
        ...


def truncation_warning(chunk_tokens: int, encoder_tokens: int, name: str, long_text: str) -> str | None:
    """A warning when chunks of ``chunk_tokens`` would be cut by an encoder reading ``encoder_tokens``
    (special tokens included), or None when they fit or are embedded in windows."""
    if chunk_tokens <= encoder_tokens - 2:
        return None
    if long_text == "windows":
        return None
    return (
        f"chunks of up to {chunk_tokens} tokens exceed what {name} reads ({encoder_tokens - 2} plus 2 "
        f"special tokens): their ends would not be embedded; set embedding.long_text='windows', "
        f"or chunking.max_tokens <= {encoder_tokens - 2}"
    )


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (None: leave the setting alone)."""
    import torch

    old = torch.get_num_threads()
    if not n or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local directory."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        name: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        query_prefix: str = "",
        document_prefix: str = "",
        long_text: LongText = "windows",
        window_stride: int | None = None,
        max_tokens: int | None = None,
        extend_to: int | None = None,
        query_threads: int | None = 1,
        packed_gpu: bool = True,
    ) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers import AutoConfig

        from indexes.long_context import extend_absolute_positions, is_rotary, ntk_rope_parameters

        if long_text not in ("windows", "truncate"):
            raise ValueError(f"unknown long_text '{long_text}'; use 'windows' or 'truncate'")
        config_kwargs: dict[str, Any] = {}
        base_positions: int | None = None
        if extend_to:
            hf_config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
            base_positions = int(getattr(hf_config, "max_position_embeddings", 0) or 0)
            if is_rotary(hf_config) and extend_to > base_positions > 0:
                config_kwargs = ntk_rope_parameters(hf_config, extend_to / base_positions)
        self.model = SentenceTransformer(
            str(model_dir),
            device=device,
            local_files_only=True,
            config_kwargs=config_kwargs or None,
        )
        self.name = name or Path(model_dir).name
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim() or 0)
        if extend_to:
            hf = self._hf_model()
            if not config_kwargs and base_positions and extend_to > base_positions:
                extend_absolute_positions(hf, extend_to)
            self.model.max_seq_length = extend_to
            self.name = f"{self.name}@{extend_to}"
        if max_tokens:
            self.model.max_seq_length = max_tokens
        self.max_tokens = int(self.model.max_seq_length or 512)
        self.tokenizer_dir = str(model_dir)
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.device = device
        self.long_text: LongText = long_text
        # Room for the special tokens ([CLS], [SEP]) and a document prefix.
        self.window = max(8, self.max_tokens - 2 - self._count(document_prefix))
        self.window_stride = window_stride or self.window
        # A question is a few dozen tokens: one CPU thread embeds it as fast as two on an idle
        # machine, and 10-20x faster on a busy one (measured in docs/retrieval.md).
        self.query_threads = query_threads
        self._warned = False
        # On CUDA, documents go through gpu.embed's packed encoder (no padding, half precision,
        # fused attention); built on first use, sentence-transformers when it cannot be.
        self.packed_gpu = packed_gpu and str(device).startswith("cuda") and not extend_to
        self._packed: Any = None

    # -- helpers ------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def _hf_model(self) -> Any:
        first = self.model[0]
        return getattr(first, "auto_model", None) or first.model

    def _count(self, text: str) -> int:
        if not text:
            return 0
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        enc = self.tokenizer(
            list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False
        )
        return [len(ids) for ids in enc["input_ids"]]

    def windows(self, text: str, window: int | None = None) -> list[tuple[int, int]]:
        """Character ranges of the windows that cover ``text`` (one when it fits); ``window``
        (tokens) may be shorter than what the encoder reads."""
        win = min(window or self.window, self.window)
        stride = self.window_stride if win == self.window else win
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return token_windows(enc["offset_mapping"], len(text), win, stride)

    def _packed_encoder(self) -> Any:
        if self._packed is None and self.packed_gpu:
            from gpu.embed import EmbedConfig, FastEmbedder

            try:
                self._packed = FastEmbedder.from_sentence_transformer(
                    self.model, EmbedConfig(device=str(self.device))
                )
            except (ValueError, RuntimeError, ImportError, AttributeError) as exc:
                log.info(
                    "packed GPU encoder unavailable for %s (%s); using sentence-transformers", self.name, exc
                )
                self.packed_gpu = False
        return self._packed

    def _encode(self, texts: list[str], *, packed: bool = False) -> np.ndarray:
        fast = self._packed_encoder() if packed else None
        if fast is not None:
            return np.ascontiguousarray(fast.embed(texts), dtype=np.float32)
        vecs = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    # -- the Embedder protocol -----------------------------------------------------------
    def embed(self, texts: Sequence[str], *, is_query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if is_query:
            with _torch_threads(self.query_threads if self.device == "cpu" else None):
                return self._encode([self.query_prefix + t for t in texts])
        if self.long_text == "truncate":
            self._warn_truncation(texts)
            return self._encode([self.document_prefix + t for t in texts], packed=True)
        return self.embed_multi(texts).pooled(len(texts), "mean")

    def embed_multi(self, texts: Sequence[str], *, window: int | None = None) -> MultiVectors:
        """Every window of every text: the vectors and, for each, the index of its text."""
        pieces: list[str] = []
        owners: list[int] = []
        for i, t in enumerate(texts):
            for a, b in self.windows(t, window):
                pieces.append(self.document_prefix + t[a:b])
                owners.append(i)
        if not pieces:
            return MultiVectors(np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64))
        return MultiVectors(self._encode(pieces, packed=True), np.asarray(owners, dtype=np.int64))

    def _warn_truncation(self, texts: Sequence[str]) -> None:
        if self._warned:
            return
        n_long = sum(1 for n in self.count_tokens(texts) if n > self.window)
        if n_long:
            self._warned = True
            log.warning(
                "%d of %d texts are longer than the %d tokens %s reads and lose their end "
                "(long_text='truncate'); use long_text='windows' to embed them whole",
                n_long,
                len(texts),
                self.window,
                self.name,
            )

    # -- late chunking ----------------------------------------------------------------------
    def embed_spans(
        self, text: str, spans: Sequence[tuple[int, int]], *, overlap: int | None = None
    ) -> np.ndarray:
        """Late chunking: one vector per character span of ``text``, each the mean of the
        contextual token vectors inside the span, the text read in windows of the encoder's
        full length. A token seen by two windows takes the vector of the one where it sits
        furthest from an edge."""
        import torch

        if not spans:
            return np.zeros((0, self.dim), dtype=np.float32)
        tok = self.tokenizer
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids: list[int] = enc["input_ids"]
        offs: list[tuple[int, int]] = enc["offset_mapping"]
        n = len(ids)
        win = self.max_tokens - 2
        ov = win // 4 if overlap is None else overlap
        starts = [0] if n <= win else list(range(0, n - win, max(1, win - ov))) + [n - win]
        token_vecs = np.zeros((n, self.dim), dtype=np.float32)
        best = np.full(n, -1, dtype=np.int64)
        hf = self._hf_model()
        dev = next(hf.parameters()).device
        cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
        with torch.inference_mode():
            for s in starts:
                e = min(n, s + win)
                seq = [cls_id, *ids[s:e], sep_id]
                inp = torch.tensor([seq], device=dev)
                out = hf(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state[0, 1:-1]
                out_np = out.float().cpu().numpy()
                pos = np.arange(s, e)
                margin = np.minimum(pos - s, e - 1 - pos)
                take = margin > best[s:e]
                token_vecs[s:e][take] = out_np[take]
                best[s:e][take] = margin[take]
        starts_c = np.array([a for a, _ in offs] or [0])
        ends_c = np.array([b for _, b in offs] or [0])
        out_vecs = np.zeros((len(spans), self.dim), dtype=np.float32)
        for i, (a, b) in enumerate(spans):
            inside = np.nonzero((starts_c >= a) & (ends_c <= b) & (ends_c > starts_c))[0]
            if inside.size:
                out_vecs[i] = token_vecs[inside].mean(axis=0)
        norms = np.linalg.norm(out_vecs, axis=1, keepdims=True)
        return out_vecs / np.maximum(norms, 1e-12)
