"""Errors a user can act on: each message says what was wrong and what to do."""


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


class StoreUnavailableError(CrossmodalError):
    """The vector store (a Milvus server) cannot be reached: HTTP 503, try again later."""


def missing_dependency(package: str, extra: str | None = None) -> MissingDependencyError:
    hint = f"pip install 'crossmodal[{extra}]'" if extra else f"pip install {package}"
    return MissingDependencyError(f"this needs the optional package '{package}': run {hint}")


class NonFiniteError(BadInputError, ValueError):
    """Embeddings or scores with NaN or inf: ranking them would give meaningless metrics."""
