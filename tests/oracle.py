"""A slow, list-based transcription of docs/orderings.md, used as a test oracle.

Written the way the paper's reference script works (Python lists, ``sorted`` with
``reverse=True``, ``rng.shuffle`` on lists), so the vectorised engine can be checked
against it row for row on arbitrary inputs. ``shuffle`` and the order inside ``segment``'s
segments (free in ORDERINGS.md) follow this tool's definition: each sequence sorted by one
``Generator.random()`` key an item.
"""

from __future__ import annotations

import random

import numpy as np


def sorted_rows(scores, ascending=True):
    return sorted(range(len(scores)), key=lambda i: float(scores[i]), reverse=not ascending)


def fo(seq, layers):
    out = []
    for layer in range(layers):
        out.extend(seq[layer::layers])
    return out


def zig(seq, layers):
    out = []
    for layer in range(layers):
        part = list(seq[layer::layers])
        if layer % 2 == 1:
            part.reverse()
        out.extend(part)
    return out


def jit(seq, window_size, seed):
    if not window_size or window_size <= 1:
        return list(seq)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, len(seq), window_size):
        chunk = list(seq[start : start + window_size])
        rng.shuffle(chunk)
        out.extend(chunk)
    return out


def cross(seq, sections, ratio, layers, mode):
    n = len(seq)
    if n == 0 or sections == 1 or ratio == 0:
        return list(seq)
    splits = [round(n * s / sections) for s in range(1, sections)]
    radius = round(n * ratio)
    out, cursor = [], 0
    for p in splits:
        start, end = max(cursor, p - radius), min(n, p + radius)
        out.extend(seq[cursor:start])
        region = list(seq[start:end])
        out.extend(fo(region, layers) if mode == "fo" else zig(region, layers))
        cursor = end
    out.extend(seq[cursor:])
    return out


def random_order(seq, rng):
    """``seq`` sorted by one ``rng.random()`` key an item, drawn in sequence order (ties keep order)."""
    keys = rng.random(len(seq))
    return [seq[i] for i in sorted(range(len(seq)), key=lambda i: keys[i])]


def order(method, scores, p):
    if method == "shuffle":
        return random_order(list(range(len(scores))), np.random.default_rng(p["seed"]))
    if method == "segment":
        rng = np.random.default_rng(p["seed"])
        return [i for part in segment_parts(scores, p) for i in random_order(part, rng)]
    if method == "sorting":
        seq = sorted_rows(scores, p["ascending"])
        if p.get("use_gumbel"):
            rng = np.random.default_rng(p["seed"])
            noise = rng.gumbel(size=len(seq)) * p["temperature"]
            new = np.argsort(np.arange(len(seq), dtype=float) + noise, kind="stable")
            seq = [seq[i] for i in new]
        return jit(seq, p["window_size"], p["seed"])
    if method == "folding":
        return jit(fo(sorted_rows(scores, p["ascending"]), p["folding_layer"]), p["window_size"], p["seed"])
    if method == "zigzag":
        return jit(zig(sorted_rows(scores, p["ascending"]), p["zigzag_layer"]), p["window_size"], p["seed"])
    if method in ("str", "saw"):
        seq = sorted_rows(scores, p["ascending"])
        seq = cross(seq, p["num_sections"], p["folding_ratio"], p["folding_layer"], "fo" if method == "str" else "zig")
        return jit(seq, p["window_size"], p["seed"])
    raise ValueError(method)


def segment_members(scores, p):
    """Front, middle and back as sets of row indices (the reference leaves the order inside free)."""
    return tuple(set(part) for part in segment_parts(scores, p))


def segment_parts(scores, p):
    """Front, middle and back as lists, in the order before each is shuffled."""
    n = len(scores)
    seq = sorted_rows(scores, True)
    rng = random.Random(p["seed"])
    n_front, n_back = int(n * p["x_pct"] // 100), int(n * p["y_pct"] // 100)
    if n_front + n_back > n:
        n_front = int(n_front * (n / (n_front + n_back)))
        n_back = n - n_front

    def take(s, k, high):
        if k <= 0:
            return [], list(s)
        return (list(s[-k:]), list(s[:-k])) if high else (list(s[:k]), list(s[k:]))

    if bool(p["front_is_high"]) == bool(p["back_is_high"]):
        selected, middle = take(seq, n_front + n_back, p["front_is_high"])
        rng.shuffle(selected)
        front, back = selected[:n_front], selected[n_front:]
    else:
        front, rest = take(seq, n_front, p["front_is_high"])
        back, middle = take(rest, n_back, p["back_is_high"])
    return front, middle, back
