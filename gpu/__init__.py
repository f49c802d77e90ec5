"""GPU-facing pieces, each with a CPU path that computes the same thing.

- ``device``: ``resolve_device`` is the one place a device is chosen.
- ``embed``: padding-free (packed) batched embedding for BERT-family sentence encoders.
- ``search``: exact inner-product search (torch fp16 matmul + top-k, Triton one-query kernels,
  FAISS on GPUs when faiss-gpu is installed) and a factory that picks one.
- ``lc``: long-context prefill with a transformers decoder and questions on the cached prefix.
- ``memory``: the GPU memory a long-context prefill needs (weights + KV per token + activations).
- ``attention``, ``triton_scores``, ``triton_lc``: the kernels behind them.

This package imports no other project code.
"""
