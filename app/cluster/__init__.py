"""Ingest and batch on a Ray cluster (``longqa ingest --ray ADDRESS``, ``longqa batch --ray``).

Ray runs the parallel part on its workers (parsing, chunking and embedding; answering
questions), each worker loading its model once; this process writes to the store in the
store's own transactional way. ``ray`` is the ``ray`` extra and is imported only here, lazily.
See docs/deploy.md, "Ray cluster".
"""
