"""Fashion-MNIST reduced by PCA, for bench/data.ts (data set fashion-pca96).

    bench/.venv/bin/python bench/peers/py/pca.py DIMS TRAIN_IN QUERY_IN TRAIN_OUT QUERY_OUT

Inputs and outputs are the bench matrix files (u32 count, u32 dimensions, little endian, then
count*dimensions float32). The principal axes come from the train (base) set alone, centred on
its mean, in float64 (numpy.linalg.eigh of the covariance); the queries (t10k) are centred on the
same mean and projected on the same axes, so they stay held out. Deterministic up to each axis's
sign, which changes no distance. Prints the share of variance kept.
"""
import sys

import numpy as np


def read(path):
    with open(path, "rb") as f:
        count, dims = np.frombuffer(f.read(8), dtype="<u4")
        return np.frombuffer(f.read(), dtype="<f4").reshape(int(count), int(dims))


def write(path, x):
    x = np.ascontiguousarray(x, dtype="<f4")
    with open(path, "wb") as f:
        f.write(np.array(x.shape, dtype="<u4").tobytes())
        f.write(x.tobytes())


def main():
    dims = int(sys.argv[1])
    train, test = read(sys.argv[2]).astype(np.float64), read(sys.argv[3]).astype(np.float64)
    mean = train.mean(axis=0)
    centred = train - mean
    cov = centred.T @ centred / (len(train) - 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:dims]
    axes = vectors[:, order]
    write(sys.argv[4], centred @ axes)
    write(sys.argv[5], (test - mean) @ axes)
    print(f"pca: {train.shape[1]} -> {dims} dimensions, {values[order].sum() / values.sum():.4f} of the variance kept", file=sys.stderr)


if __name__ == "__main__":
    main()
