"""Tokens: a run's documents as token ids, in the order of the output.

The gather tasks (and the in-memory rewrite) tokenize each finished row shard into a token piece
beside it: ``NNNNN.tokens`` (the shard's documents' ids, little-endian, the run's token dtype, each
document ``[BOS] + ids + [EOS]``) and ``NNNNN.lengths.npy`` (tokens per document, int64). The
exporters (``reorder_cli.export``) assemble the pieces into what a trainer reads.
"""
