"""Device selection in one place."""

from __future__ import annotations


def resolve_device(pref: str | None = None) -> str:
    """Return the torch device to use.

    ``pref`` is ``None``/``"auto"`` (CUDA if available, then Apple MPS, else CPU),
    or an explicit device such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``. An explicit
    CUDA request on a machine without CUDA raises ValueError naming the fix.
    """
    import torch

    choice = (pref or "auto").strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device '{pref}' requested but CUDA is not available; use 'auto' or 'cpu'")
        if ":" in choice:
            index = int(choice.split(":", 1)[1])
            if index >= torch.cuda.device_count():
                raise ValueError(
                    f"device '{pref}' requested but only {torch.cuda.device_count()} GPU(s) exist"
                )
        return choice
    if choice in ("cpu", "mps"):
        return choice
    raise ValueError(f"unknown device '{pref}'; use auto, cpu, cuda, cuda:N or mps")
