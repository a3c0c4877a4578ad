"""Deterministic FineWeb-Edu-like scored corpus, for the sample data and the benchmark.

Rows have the fields ``id``, ``text``, ``url``, ``token_count``, ``score`` (float,
3 decimals, so ties are common) and ``int_score``. Document lengths are lognormal
(median ``median_chars``, long tail). Text is made of words drawn from a fixed
vocabulary, so it compresses roughly like real text.

    python scripts/corpus.py OUT_DIR --docs 200000 --shards 8 --formats jsonl,parquet
    python scripts/corpus.py OUT_DIR --docs 20000 --score-field metadata.score   # nested, as FineWeb-like pipelines

With a dotted ``--score-field`` (``metadata.score``) the score and ``int_score`` move into a
struct column named by the first part; use the same ``score_field`` in the reorder config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

_SYLLABLES = np.array(
    ["ba", "ke", "li", "mo", "nu", "ra", "se", "ti", "vo", "za", "an", "el", "in", "or", "us",
     "th", "st", "pr", "gr", "ch", "qu", "en", "al", "ic", "ly"]
)


def _vocabulary(rng: np.random.Generator, size: int = 6000) -> np.ndarray:
    lengths = rng.integers(1, 5, size)
    parts = rng.choice(_SYLLABLES, size=(size, 4))
    return np.array(["".join(p[:k]) for p, k in zip(parts, lengths, strict=True)])


def _text_pool(rng: np.random.Generator, chars: int) -> str:
    vocab = _vocabulary(rng)
    zipf = rng.zipf(1.3, size=chars // 5) % len(vocab)
    words = vocab[zipf]
    ends = rng.random(len(words)) < 0.07
    words = np.where(ends, np.char.add(words, "."), words)
    return " ".join(words.tolist())


def make_frame(docs: int, seed: int = 0, median_chars: int = 2500, sigma: float = 0.9) -> pl.DataFrame:
    """Return ``docs`` rows of the corpus; same arguments, same rows."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(median_chars), sigma, docs), 20, median_chars * 60).astype(np.int64)
    pool_chars = int(min(max(lengths.max() * 4, 4_000_000), 64_000_000))
    pool = _text_pool(rng, pool_chars)
    starts = rng.integers(0, max(1, len(pool) - lengths.max() - 1), docs)
    text = (
        pl.DataFrame({"s": starts, "n": lengths})
        .select(text=pl.lit(pool).str.slice(pl.col("s"), pl.col("n")))
        .get_column("text")
    )
    raw = np.clip(rng.normal(2.2, 0.8, docs), 0.0, 5.0)
    score = np.round(raw, 3)
    ids = pl.Series(np.arange(docs)).cast(pl.String).str.zfill(9)
    return pl.DataFrame(
        {
            "id": "<urn:doc:" + ids + ">",
            "text": text,
            "url": "https://example.org/" + pl.Series(rng.integers(0, 10**6, docs)).cast(pl.String) + "/page",
            "token_count": (lengths // 4).astype(np.int64),
            "score": score,
            "int_score": np.clip(np.round(score), 0, 5).astype(np.int64),
        }
    )


def nest_score(frame: pl.DataFrame, score_field: str) -> pl.DataFrame:
    """Put ``score`` (and ``int_score``) at the dotted path ``score_field``: ``metadata.score`` makes a
    struct column ``metadata`` holding ``score`` and ``int_score``. A plain name just renames the column."""
    *outer, leaf = score_field.split(".")
    if not outer:
        return frame.rename({"score": leaf}) if leaf != "score" else frame
    inner = pl.struct(pl.col("score").alias(leaf), pl.col("int_score"))
    for name in reversed(outer[1:]):
        inner = pl.struct(inner.alias(name))
    return frame.with_columns(inner.alias(outer[0])).drop("score", "int_score")


def write_corpus(frame: pl.DataFrame, out: Path, shards: int, formats: list[str], row_group_size: int = 10_000) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, frame.height, shards + 1).astype(int)
    for i in range(shards):
        part = frame.slice(bounds[i], bounds[i + 1] - bounds[i])
        for fmt in formats:
            path = out / f"part-{i:04d}.{fmt}"
            if fmt == "jsonl":
                part.write_ndjson(path)
            elif fmt == "parquet":
                pq.write_table(part.to_arrow(), path, compression="zstd", row_group_size=row_group_size)
            else:
                raise SystemExit(f"unknown format {fmt!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write the shards into (created if missing)")
    parser.add_argument("--docs", type=int, default=200_000, help="documents (rows) in the whole corpus")
    parser.add_argument("--shards", type=int, default=8, help="files a format; rows are split evenly, in order")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same bytes")
    parser.add_argument("--median-chars", type=int, default=2500,
                        help="median document length in characters (lengths are lognormal, with a long tail)")
    parser.add_argument("--formats", default="jsonl,parquet", help="comma-separated formats to write: jsonl, parquet")
    parser.add_argument("--score-field", default="score",
                        help="where the score goes; a dotted path nests it in a struct (metadata.score)")
    args = parser.parse_args()
    frame = nest_score(make_frame(args.docs, args.seed, args.median_chars), args.score_field)
    write_corpus(frame, args.out, args.shards, args.formats.split(","))


if __name__ == "__main__":
    main()
