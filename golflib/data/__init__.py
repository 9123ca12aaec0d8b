"""Data: the challenge's shard format, corpora, tokenizers, byte LUTs, loaders and the FineWeb downloader."""
