"""Deterministic scored corpora of several shapes, for the sample data and the benchmark.

Every shape has a string ``text`` column, an ``id`` (``<urn:doc:000000042>``), a ``token_count`` (int64,
characters / 4) and a float ``score`` (3 decimals, so ties are common) at the shape's ``score_field``; the
same arguments give the same rows. Texts are made of words drawn from a fixed vocabulary (a Zipf draw),
so they compress roughly like real text; document lengths are lognormal (a median and a long tail).

``--shape``:

- ``fineweb`` (the default): FineWeb-Edu-like, 6 columns ``id``, ``text``, ``url``, ``token_count``,
  ``score``, ``int_score``; median 2,500 characters. Score field ``score``.
- ``long``: long documents, few columns (``id``, ``text``, ``url``, ``token_count``, ``score``); median
  20,000 characters (sigma 0.7, at most 20x the median), so 200,000 documents hold about 5 GB of text.
  Parquet row groups of 1,500 rows (about the bytes of fineweb's 10,000). Score field ``score``.
- ``wide``: short rows with many columns: 40 columns, ``id``, a short ``text`` (median 160 characters),
  ``score``, ``int_score``, ``token_count``, ten ints ``int_00``..``int_09`` (int64, int32, int16, int8 in
  turn), ten floats ``float_00``..``float_09`` (float64, float32 in turn), eight short strings
  ``str_00``..``str_07`` and seven bools ``bool_00``..``bool_06``; every third of these 35 columns has
  about 5% nulls. Score field ``score``.
- ``nested``: nested structs and lists: ``id``, ``text`` (median 800 characters), ``token_count``, a
  ``metadata`` struct {``score``, ``int_score``, ``source`` {``url``, ``domain``, ``crawl``, ``dump``},
  ``quality`` {``language``, ``language_score`` (3% null), ``flags`` {``has_code``, ``has_math``,
  ``boilerplate``}}}, ``annotations`` (a list of 0 or more structs {``label``, ``start``, ``end``,
  ``confidence``}) and ``tags`` (a list of 0 or more strings). Score field ``metadata.score``.

    python scripts/corpus.py OUT_DIR --docs 200000 --shards 8 --formats jsonl,parquet
    python scripts/corpus.py OUT_DIR --docs 200000 --shape nested --formats parquet   # score_field: metadata.score
    python scripts/corpus.py OUT_DIR --docs 20000 --score-field metadata.score   # fineweb with the score nested

With a dotted ``--score-field`` (``metadata.score``) the score and ``int_score`` move into a struct column
named by the first part (fineweb, long and wide); use the same ``score_field`` in the reorder config. The
nested shape's score is always ``metadata.score``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
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


def _lengths(rng: np.random.Generator, docs: int, median_chars: int, sigma: float, cap: int) -> np.ndarray:
    """Lognormal document lengths in characters: median ``median_chars``, at least 20, at most ``cap``."""
    return np.clip(rng.lognormal(np.log(median_chars), sigma, docs), 20, cap).astype(np.int64)


def _texts(rng: np.random.Generator, lengths: np.ndarray, min_pool: int = 4_000_000) -> pl.Series:
    """One text of each length, sliced at random places out of one pool of words."""
    pool_chars = int(min(max(lengths.max() * 4, min_pool), 64_000_000))
    pool = _text_pool(rng, pool_chars)
    starts = rng.integers(0, max(1, len(pool) - lengths.max() - 1), len(lengths))
    return (
        pl.DataFrame({"s": starts, "n": lengths})
        .select(text=pl.lit(pool).str.slice(pl.col("s"), pl.col("n")))
        .get_column("text")
    )


def _ids(docs: int) -> pl.Series:
    return "<urn:doc:" + pl.Series(np.arange(docs)).cast(pl.String).str.zfill(9) + ">"


def _urls(rng: np.random.Generator, docs: int) -> pl.Series:
    return "https://example.org/" + pl.Series(rng.integers(0, 10**6, docs)).cast(pl.String) + "/page"


def _scores(rng: np.random.Generator, docs: int) -> np.ndarray:
    return np.round(np.clip(rng.normal(2.2, 0.8, docs), 0.0, 5.0), 3)


def _int_scores(score: np.ndarray) -> np.ndarray:
    return np.clip(np.round(score), 0, 5).astype(np.int64)


def _fineweb(rng: np.random.Generator, docs: int, median_chars: int, sigma: float) -> pl.DataFrame:
    # The order of the draws is the corpus: changing it changes every byte of today's corpora.
    lengths = _lengths(rng, docs, median_chars, sigma, median_chars * 60)
    text = _texts(rng, lengths)
    score = _scores(rng, docs)
    return pl.DataFrame(
        {
            "id": _ids(docs),
            "text": text,
            "url": _urls(rng, docs),
            "token_count": (lengths // 4).astype(np.int64),
            "score": score,
            "int_score": _int_scores(score),
        }
    )


def _long(rng: np.random.Generator, docs: int, median_chars: int, sigma: float) -> pl.DataFrame:
    lengths = _lengths(rng, docs, median_chars, sigma, median_chars * 20)
    text = _texts(rng, lengths, min_pool=16_000_000)
    return pl.DataFrame(
        {
            "id": _ids(docs),
            "text": text,
            "url": _urls(rng, docs),
            "token_count": (lengths // 4).astype(np.int64),
            "score": _scores(rng, docs),
        }
    )


_INT_TYPES = ((pl.Int64, 10**12), (pl.Int32, 10**6), (pl.Int16, 10**4), (pl.Int8, 100))  # (type, values below)
_FLOAT_TYPES = (pl.Float64, pl.Float32)
_CODES = np.array(["en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "cs", "ja", "zh", "ko", "ru", "tr", "ar"])


def _with_nulls(rng: np.random.Generator, series: pl.Series, share: float) -> pl.Series:
    keep = pl.Series(rng.random(len(series)) >= share)
    return pl.select(pl.when(keep).then(pl.lit(series))).to_series().alias(series.name)


def _wide(rng: np.random.Generator, docs: int, median_chars: int, sigma: float) -> pl.DataFrame:
    lengths = _lengths(rng, docs, median_chars, sigma, median_chars * 20)
    text = _texts(rng, lengths)
    score = _scores(rng, docs)
    vocab = _vocabulary(rng, 2000)
    extra: list[pl.Series] = []
    for k in range(10):
        dtype, high = _INT_TYPES[k % 4]
        extra.append(pl.Series(f"int_{k:02d}", rng.integers(0, high, docs), dtype=dtype))
    for k in range(10):
        values = rng.normal(0, 10 ** (k % 4), docs)
        extra.append(pl.Series(f"float_{k:02d}", values, dtype=_FLOAT_TYPES[k % 2]))
    for k in range(8):
        words = vocab if k % 2 else _CODES  # a word, or a 2-letter code
        extra.append(pl.Series(f"str_{k:02d}", words[rng.integers(0, len(words), docs)], dtype=pl.String))
    for k in range(7):
        extra.append(pl.Series(f"bool_{k:02d}", rng.random(docs) < 0.1 + 0.1 * k))
    extra = [_with_nulls(rng, s, 0.05) if i % 3 == 2 else s for i, s in enumerate(extra)]
    return pl.DataFrame(
        [
            _ids(docs).alias("id"),
            text.alias("text"),
            pl.Series("score", score),
            pl.Series("int_score", _int_scores(score)),
            pl.Series("token_count", (lengths // 4).astype(np.int64)),
            *extra,
        ]
    )


_LABELS = np.array(["person", "place", "date", "number", "code", "formula", "quote", "title", "list", "table",
                    "link", "term"])
_TAGS = np.array([f"tag-{k:02d}" for k in range(50)])


def _one_chunk(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One Arrow array (``pa.array`` of a large numpy string array gives chunks)."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _lists(rng: np.random.Generator, docs: int, mean: float, most: int) -> tuple[np.ndarray, pa.Array]:
    """Lengths (Poisson, at most ``most``) of ``docs`` lists and their offsets, as an int32 Arrow array."""
    counts = np.minimum(rng.poisson(mean, docs), most)
    return counts, pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))


def _nested(rng: np.random.Generator, docs: int, median_chars: int, sigma: float) -> pl.DataFrame:
    lengths = _lengths(rng, docs, median_chars, sigma, median_chars * 60)
    text = _texts(rng, lengths)
    score = _scores(rng, docs)
    crawls = np.array([f"CC-MAIN-{y}-{w:02d}" for y in range(2013, 2025) for w in (5, 18, 30, 43)])
    language_score = np.round(rng.uniform(0.5, 1.0, docs), 3)
    source = pa.StructArray.from_arrays(
        [_one_chunk(_urls(rng, docs).to_arrow()),
         _one_chunk(pa.array(np.char.add("site-", rng.integers(0, 5000, docs).astype(str)))),
         _one_chunk(pa.array(crawls[rng.integers(0, len(crawls), docs)])),
         pa.array(rng.integers(0, 100, docs).astype(np.int32))],
        names=["url", "domain", "crawl", "dump"])
    flags = pa.StructArray.from_arrays(
        [pa.array(rng.random(docs) < 0.1), pa.array(rng.random(docs) < 0.05),
         pa.array(rng.random(docs).astype(np.float32))],
        names=["has_code", "has_math", "boilerplate"])
    quality = pa.StructArray.from_arrays(
        [_one_chunk(pa.array(_CODES[np.minimum(rng.geometric(0.5, docs) - 1, len(_CODES) - 1)])),
         pa.array(language_score, mask=rng.random(docs) < 0.03), flags],
        names=["language", "language_score", "flags"])
    metadata = pa.StructArray.from_arrays(
        [pa.array(score), pa.array(_int_scores(score)), source, quality],
        names=["score", "int_score", "source", "quality"])
    counts, offsets = _lists(rng, docs, 2.0, 12)
    total = int(counts.sum())
    start = rng.integers(0, np.repeat(lengths, counts))
    spans = pa.StructArray.from_arrays(
        [_one_chunk(pa.array(_LABELS[rng.integers(0, len(_LABELS), total)])), pa.array(start),
         pa.array(start + rng.integers(1, 200, total)), pa.array(rng.random(total).astype(np.float32))],
        names=["label", "start", "end", "confidence"])
    _, tag_offsets = _lists(rng, docs, 3.0, 8)
    tags = _one_chunk(pa.array(_TAGS[rng.integers(0, len(_TAGS), int(tag_offsets[-1].as_py()))]))
    table = pa.table({
        "id": _ids(docs).to_arrow(),
        "text": text.to_arrow(),
        "token_count": pa.array((lengths // 4).astype(np.int64)),
        "metadata": metadata,
        "annotations": pa.ListArray.from_arrays(offsets, spans),
        "tags": pa.ListArray.from_arrays(tag_offsets, tags),
    })
    return pl.from_arrow(table)


@dataclass(frozen=True)
class Shape:
    """A kind of corpus: its defaults and the function that draws its rows."""

    name: str
    median_chars: int  # default median length of ``text``, in characters
    sigma: float  # of the lognormal lengths
    score_field: str  # where the score is (the reorder config's ``score_field``)
    row_group_size: int  # rows per Parquet row group
    draw: Callable[[np.random.Generator, int, int, float], pl.DataFrame]


SHAPES: dict[str, Shape] = {
    "fineweb": Shape("fineweb", 2500, 0.9, "score", 10_000, _fineweb),
    "long": Shape("long", 20_000, 0.7, "score", 1_500, _long),
    "wide": Shape("wide", 160, 0.5, "score", 10_000, _wide),
    "nested": Shape("nested", 800, 0.9, "metadata.score", 10_000, _nested),
}


def shape_of(name: str) -> Shape:
    if name not in SHAPES:
        raise SystemExit(f"unknown shape {name!r} (expected one of {', '.join(SHAPES)})")
    return SHAPES[name]


def make_frame(docs: int, seed: int = 0, median_chars: int | None = None, sigma: float | None = None,
               shape: str = "fineweb") -> pl.DataFrame:
    """Return ``docs`` rows of the corpus of ``shape``; same arguments, same rows. ``median_chars`` and
    ``sigma`` default to the shape's."""
    spec = shape_of(shape)
    rng = np.random.default_rng(seed)
    return spec.draw(rng, docs, median_chars or spec.median_chars, sigma or spec.sigma)


def nest_score(frame: pl.DataFrame, score_field: str) -> pl.DataFrame:
    """Put ``score`` (and ``int_score``, when there is one) at the dotted path ``score_field``:
    ``metadata.score`` makes a struct column ``metadata`` holding ``score`` and ``int_score``. A plain name
    just renames the column."""
    *outer, leaf = score_field.split(".")
    if not outer:
        return frame.rename({"score": leaf}) if leaf != "score" else frame
    moved = ["score", *(["int_score"] if "int_score" in frame.columns else [])]
    inner = pl.struct(pl.col("score").alias(leaf), *moved[1:])
    for name in reversed(outer[1:]):
        inner = pl.struct(inner.alias(name))
    return frame.with_columns(inner.alias(outer[0])).drop(moved)


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
    parser.add_argument("--shape", default="fineweb", choices=list(SHAPES),
                        help="kind of corpus: fineweb (6 columns), long (median 20,000 characters), wide (40 "
                             "columns), nested (structs and lists, score at metadata.score)")
    parser.add_argument("--median-chars", type=int,
                        help="median document length in characters (lengths are lognormal, with a long tail); "
                             "default: the shape's (fineweb 2500, long 20000, wide 160, nested 800)")
    parser.add_argument("--formats", default="jsonl,parquet", help="comma-separated formats to write: jsonl, parquet")
    parser.add_argument("--score-field",
                        help="where the score goes; a dotted path nests it in a struct (metadata.score); "
                             "default: the shape's (score; metadata.score for nested, which takes no other)")
    args = parser.parse_args()
    shape = SHAPES[args.shape]
    frame = make_frame(args.docs, args.seed, args.median_chars, shape=args.shape)
    if args.score_field and args.score_field != shape.score_field:
        if args.shape == "nested":
            raise SystemExit(f"--score-field {args.score_field}: the nested shape's score is at metadata.score")
        frame = nest_score(frame, args.score_field)
    write_corpus(frame, args.out, args.shards, args.formats.split(","), shape.row_group_size)


if __name__ == "__main__":
    main()
