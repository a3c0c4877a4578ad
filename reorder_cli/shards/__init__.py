"""Shard formats: discovering inputs, reading keys and rows, writing output shards."""
