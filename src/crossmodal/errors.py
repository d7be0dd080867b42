"""Errors a user can act on: each message says what was wrong and what to do."""

import errno


class CrossmodalError(Exception):
    """Base class; the CLI prints these as one line without a traceback."""


class UnknownModelError(CrossmodalError):
    pass


class MissingDependencyError(CrossmodalError):
    pass


class IndexMismatchError(CrossmodalError):
    pass


class IndexCorruptError(CrossmodalError):
    pass


class BadInputError(CrossmodalError):
    pass


class IndexWriteError(CrossmodalError):
    """A change could not be written (an I/O error): it was not committed, and the writer's
    memory is back at the last commit. HTTP 503."""


class DiskFullError(IndexWriteError):
    """The disk (or quota) is full: HTTP 507 Insufficient Storage; retry once there is room."""


def write_failed(exc: OSError, outcome: str = "nothing was changed") -> IndexWriteError:
    """The error for a change whose write failed with `exc`; it names no path (a server
    answers with it)."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"the disk is full ({reason}); {outcome}")
    return IndexWriteError(f"could not write the index ({reason}); {outcome}")


class StoreUnavailableError(CrossmodalError):
    """The vector store (a Milvus server) cannot be reached: HTTP 503, try again later."""


def missing_dependency(package: str, extra: str | None = None) -> MissingDependencyError:
    hint = f"pip install 'crossmodal[{extra}]'" if extra else f"pip install {package}"
    return MissingDependencyError(f"this needs the optional package '{package}': run {hint}")


class NonFiniteError(BadInputError, ValueError):
    """Embeddings or scores with NaN or inf: ranking them would give meaningless metrics."""
