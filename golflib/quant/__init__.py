"""Quantization and the artifact: int8 export, codecs, the pickle-free container."""
