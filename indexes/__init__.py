"""Embedders, vector index, BM25 and hybrid retrieval. Imports pipeline types and gpu/ only."""
