"""One Python ANN library behind a line protocol, driven by bench/peers/python.ts.

    bench/.venv/bin/python bench/peers/py/runner.py faiss-hnsw|faiss-hnsw-sq8|scann

Requests arrive on stdin, one JSON object per line; each gets one JSON line back on the original
stdout (fd 1 is redirected to stderr first, so anything a native library prints cannot corrupt
the protocol). Vectors travel as raw little-endian float32 files and results as raw uint32 files;
JSON carries only control fields.

  {"op": "build", "base": PATH, "count": N, "dimensions": D, "metric": "l2"|"ip"|"cosine",
   "m": 16, "efConstruction": 200, "threads": 2, "seed": 1}
      -> {"ok": true, "build_s": S, "rss_mb": MiB added by the build, "library": NAME,
          "build_threads": T}
  {"op": "sweep", "queries": PATH, "count": Q, "k": 10, "ef": E, "reorder": N (ScaNN only),
   "runs": R, "warm": 100, "clock": "wall"|"cpu", "out": PATH}
      -> writes Q*k uint32 ids (0xFFFFFFFF past a row's count) then Q uint32 counts to PATH;
         {"ok": true, "seconds": best pass, "cpu_share": cpu/wall of that pass}
  {"op": "quit"}

Timing is done here, around a loop of single-query calls (one query per call, one thread), so the
bridge is never charged to the library. "ef" is efSearch for FAISS and leaves_to_search for ScaNN.
"""
import json
import os
import sys
import time

import numpy as np

PROTO = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)  # Native code writing to stdout now lands on stderr.
sys.stdout = sys.stderr

MISSING = np.uint32(0xFFFFFFFF)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def read_f32(path: str, count: int, dimensions: int) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32, count=count * dimensions).reshape(count, dimensions)


def normalized(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class Faiss:
    def __init__(self, sq8: bool):
        import faiss  # noqa: PLC0415

        self.faiss = faiss
        self.sq8 = sq8
        self.library = "faiss-hnsw-sq8" if sq8 else "faiss-hnsw"
        self.version = faiss.__version__

    def build(self, base: np.ndarray, req: dict) -> int:
        faiss, d = self.faiss, req["dimensions"]
        # Cosine: unit-length base vectors under inner product, so ranking ignores the query norm.
        metric = faiss.METRIC_L2 if req["metric"] == "l2" else faiss.METRIC_INNER_PRODUCT
        if req["metric"] == "cosine":
            base = normalized(base)
        if self.sq8:
            index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, req["m"], metric)
        else:
            index = faiss.IndexHNSWFlat(d, req["m"], metric)
        index.hnsw.efConstruction = req["efConstruction"]
        faiss.omp_set_num_threads(req["threads"])
        if self.sq8:
            index.train(base)
        index.add(base)
        faiss.omp_set_num_threads(1)
        self.index = index
        return req["threads"]

    def set_ef(self, ef: int, reorder: int = 0) -> None:
        self.index.hnsw.efSearch = ef

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        _, ids = self.index.search(q, k)
        return ids[0]


class Scann:
    """The ann-benchmarks ScaNN family: k-means tree, AH (2 dims per 4-bit block) with anisotropic
    quantization, exact reorder. Leaves = about 2 sqrt(n). The sweep's "ef" is leaves_to_search and
    its "reorder" the number of AH candidates rescored exactly (ann-benchmarks sweeps such pairs)."""

    def __init__(self):
        import scann  # noqa: PLC0415

        self.scann = scann
        self.library = "scann"
        try:
            from importlib.metadata import version  # noqa: PLC0415

            self.version = version("scann")
        except Exception:  # noqa: BLE001
            self.version = "?"

    def build(self, base: np.ndarray, req: dict) -> int:
        n = base.shape[0]
        if req["metric"] == "cosine":
            base, dist, spherical = normalized(base), "dot_product", True
        elif req["metric"] == "ip":
            dist, spherical = "dot_product", False
        else:
            dist, spherical = "squared_l2", False
        self.leaves = max(2, int(round(2 * np.sqrt(n))))
        builder = (
            self.scann.scann_ops_pybind.builder(base, 10, dist)
            .tree(num_leaves=self.leaves, num_leaves_to_search=min(10, self.leaves),
                  training_sample_size=n, spherical=spherical, quantize_centroids=True)
            .score_ah(2, anisotropic_quantization_threshold=0.2)
            .reorder(100)
        )
        builder.set_n_training_threads(req["threads"])
        self.searcher = builder.build()
        self.set_ef(10)
        return req["threads"]

    def set_ef(self, ef: int, reorder: int = 100) -> None:
        self.leaves_to_search = min(ef, self.leaves)
        self.reorder = reorder

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        ids, _ = self.searcher.search(q[0], k, self.reorder, self.leaves_to_search)
        return ids


def main() -> None:
    name = sys.argv[1]
    if name == "faiss-hnsw":
        lib = Faiss(sq8=False)
    elif name == "faiss-hnsw-sq8":
        lib = Faiss(sq8=True)
    elif name == "scann":
        lib = Scann()
    else:
        raise SystemExit(f"runner.py: unknown library {name}")
    reply = lambda obj: PROTO.write(json.dumps(obj) + "\n")  # noqa: E731
    reply({"ok": True, "ready": lib.library, "version": lib.version})
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "quit":
                reply({"ok": True})
                return
            if req["op"] == "build":
                before = rss_mb()  # Before the base is read: the delta is the index alone.
                base = read_f32(req["base"], req["count"], req["dimensions"])
                start = time.perf_counter()
                threads = lib.build(base, req)
                seconds = time.perf_counter() - start
                del base
                reply({"ok": True, "build_s": seconds, "rss_mb": rss_mb() - before,
                       "library": lib.library, "build_threads": threads})
            elif req["op"] == "sweep":
                count, k, d = req["count"], req["k"], req["dimensions"]
                queries = read_f32(req["queries"], count, d)
                rows = [np.ascontiguousarray(queries[i:i + 1]) for i in range(count)]
                lib.set_ef(req["ef"], req.get("reorder") or 100)
                search = lib.search
                for i in range(min(req.get("warm", 100), count)):
                    search(rows[i], k)
                best, share = float("inf"), 0.0
                results = [None] * count
                for _ in range(req["runs"]):
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    for i in range(count):
                        results[i] = search(rows[i], k)
                    wall = time.perf_counter() - wall0
                    cpu = time.process_time() - cpu0
                    seconds = cpu if req.get("clock") == "cpu" else wall
                    if seconds < best:
                        best, share = seconds, cpu / wall
                ids = np.full((count, k), MISSING, dtype=np.uint32)
                counts = np.zeros(count, dtype=np.uint32)
                for i, r in enumerate(results):
                    r = np.asarray(r)
                    r = r[r >= 0][:k]  # FAISS pads with -1.
                    ids[i, :len(r)] = r
                    counts[i] = len(r)
                with open(req["out"], "wb") as f:
                    f.write(ids.tobytes())
                    f.write(counts.tobytes())
                reply({"ok": True, "seconds": best, "cpu_share": share})
            else:
                reply({"ok": False, "error": f"unknown op {req['op']}"})
        except Exception as e:  # noqa: BLE001
            reply({"ok": False, "error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
