"""Documents in, chunks out: types, loaders, chunking, token counting, the metadata store."""
