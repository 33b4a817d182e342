#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target: a few deterministic
pseudo-random inputs of increasing length per target (libFuzzer mutates from
there; the targets read any byte string as a sequence of operations).
Run from anywhere: python3 tests/fuzz/make_seeds.py"""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ["size_map", "pagemap", "page_heap", "filler", "region", "huge_cache", "allocator"]
LENGTHS = [16, 128, 512, 2048]

for t in TARGETS:
    d = os.path.join(HERE, "corpus", t)
    os.makedirs(d, exist_ok=True)
    for i, n in enumerate(LENGTHS):
        rng = random.Random(f"{t}-{i}")
        with open(os.path.join(d, f"seed-{i}-{n}"), "wb") as f:
            f.write(bytes(rng.randrange(256) for _ in range(n)))
