"""`python -m hatch_wizer`: the same as the `hatch-wizer` command."""

from .build.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
