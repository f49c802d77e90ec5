"""Training-free context-window extension of encoders (LongEmbed, Zhu et al. 2024).

- Absolute position embeddings (BERT, MiniLM, MPNet): **position interpolation**.
  The learned table of ``n`` positions is resampled to ``m > n`` positions by
  linear interpolation, so position ``j`` of the long input reads the vector the
  model learned for position ``j * (n - 1) / (m - 1)``.
- Rotary position embeddings (EmbeddingGemma, ModernBERT, nomic): **NTK-aware
  scaling**. The rotary base is raised to ``theta * s ** (d / (d - 2))`` for a
  stretch ``s``, which keeps the fast (local) frequencies and slows the slow
  ones; it is applied through the model config before loading.

Whether either helps is measured in ``benchmarks/retrieval_lara.py`` (see
docs/retrieval.md); both are off by default.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

log = logging.getLogger(__name__)


def interpolate_table(weight: Any, new_len: int) -> Any:
    """Resample a (n, d) position table to (new_len, d) by linear interpolation (a torch tensor)."""
    import torch

    n = int(weight.shape[0])
    if new_len < 2 or n < 2:
        raise ValueError(f"cannot interpolate a table of {n} positions to {new_len}")
    pos = torch.linspace(0, n - 1, new_len, dtype=torch.float64, device=weight.device)
    lo = pos.floor().long().clamp(max=n - 2)
    frac = (pos - lo.double()).unsqueeze(1).to(weight.dtype)
    w = weight.detach()
    return w[lo] * (1 - frac) + w[lo + 1] * frac


def _position_embedding_module(model: Any) -> Any:
    """The nn.Embedding of absolute positions in a BERT-like Hugging Face model, or None."""
    emb = getattr(model, "embeddings", None)
    table = getattr(emb, "position_embeddings", None) if emb is not None else None
    return emb, table


def extend_absolute_positions(hf_model: Any, new_len: int) -> int:
    """Interpolate the position table of a BERT-like model in place to ``new_len`` positions.

    Returns the original number of positions. Raises ValueError for models without an
    absolute position table (use ``ntk_rope_parameters`` for rotary models)."""
    import torch

    emb, table = _position_embedding_module(hf_model)
    if table is None or not isinstance(table, torch.nn.Embedding):
        raise ValueError(
            f"{type(hf_model).__name__} has no absolute position table to interpolate; "
            "for rotary (RoPE) encoders set rope_scaling instead"
        )
    old_len = int(table.num_embeddings)
    if new_len <= old_len:
        return old_len
    new = torch.nn.Embedding(new_len, table.embedding_dim, padding_idx=table.padding_idx)
    new.weight.data = interpolate_table(table.weight.data, new_len).to(table.weight.dtype)
    new = new.to(table.weight.device)
    emb.position_embeddings = new
    # Buffers sized by the old table (BERT keeps position_ids and token_type_ids of that length).
    for name in ("position_ids", "token_type_ids"):
        buf = getattr(emb, name, None)
        if buf is not None and buf.shape[-1] == old_len:
            if name == "position_ids":
                grown = torch.arange(new_len, device=buf.device, dtype=buf.dtype).unsqueeze(0)
            else:
                grown = torch.zeros((1, new_len), device=buf.device, dtype=buf.dtype)
            emb.register_buffer(name, grown, persistent=False)
    if hasattr(hf_model, "config"):
        hf_model.config.max_position_embeddings = new_len
    log.info("position interpolation: %d -> %d positions", old_len, new_len)
    return old_len


def ntk_theta(theta: float, factor: float, head_dim: int) -> float:
    """The NTK-aware rotary base for a context stretched ``factor`` times."""
    if factor <= 1:
        return theta
    if head_dim <= 2:
        raise ValueError(f"head_dim must be > 2 for NTK scaling, got {head_dim}")
    return float(theta * factor ** (head_dim / (head_dim - 2)))


def ntk_rope_parameters(config: Any, factor: float) -> dict[str, Any]:
    """Config overrides that apply NTK-aware scaling to a rotary encoder's config.

    Handles both ``rope_parameters`` (transformers 5, possibly one dict per attention
    type) and the older ``rope_theta`` attribute. Pass the result as ``config_kwargs``."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    out: dict[str, Any] = {}
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and params:
        params = copy.deepcopy(params)
        nested = all(isinstance(v, dict) for v in params.values())
        for p in params.values() if nested else [params]:
            p["rope_theta"] = ntk_theta(float(p.get("rope_theta", 10000.0)), factor, head_dim)
        out["rope_parameters"] = params
    elif getattr(config, "rope_theta", None) is not None:
        out["rope_theta"] = ntk_theta(float(config.rope_theta), factor, head_dim)
    else:
        raise ValueError(
            f"{type(config).__name__} has no rotary base (rope_theta); NTK scaling applies to RoPE "
            "encoders only, use position interpolation for absolute positions"
        )
    if getattr(config, "max_position_embeddings", None):
        out["max_position_embeddings"] = int(config.max_position_embeddings * factor)
    return out


def is_rotary(config: Any) -> bool:
    return bool(getattr(config, "rope_parameters", None)) or getattr(config, "rope_theta", None) is not None
