"""`python -m crossmodal ...` is the `crossmodal` command (handy under torchrun -m)."""

from crossmodal.cli.main import cli

if __name__ == "__main__":
    cli()
