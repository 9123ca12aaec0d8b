"""Data: the challenge's shard format, corpora, tokenizers, byte LUTs, loaders and the FineWeb downloader."""

from golflib._facade import lazy_exports

# the facade: each public name is imported from its module on first use (golflib._facade)
__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "bytecount": ("ByteSidecar", "load_byte_counter"),
    "corpus": ("Document", "load_corpus", "load_embedded_docs", "load_jsonl_docs", "load_text_docs"),
    "loader": ("TokenStream", "DistributedTokenLoader", "load_validation_tokens"),
    "loaders": ("CoprimeStrideLoader", "ShuffledSequenceLoader", "DocumentPackingLoader", "make_loader"),
    "luts": ("ByteLUTs", "load_sentencepiece", "build_sentencepiece_luts"),
    "prepare": ("prepare_dataset", "load_manifest", "find_dataset"),
    "shards": ("ShardError", "ShardHeader", "write_shard", "read_header", "load_shard", "validate_shard"),
    "tokenizer": ("train_sentencepiece",),
})
