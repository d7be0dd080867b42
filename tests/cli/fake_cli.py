"""`python -m tests.cli.fake_cli ARGS...`: the real `crossmodal` command line in a process of
its own, with every `fake:` model id served by tests.fakes.FakeEncoder (no weights)."""

from __future__ import annotations

import sys

from crossmodal.cli.main import cli
from crossmodal.models import registry
from tests.fakes import FakeEncoder

if __name__ == "__main__":
    encoder = FakeEncoder()
    registry._BACKENDS.register("fake", lambda name, model_id: encoder)
    sys.exit(cli(sys.argv[1:], prog_name="crossmodal"))
