"""GPU-facing pieces: device choice and (later) GPU search and batched embedding.

This package imports no other project code.
"""
