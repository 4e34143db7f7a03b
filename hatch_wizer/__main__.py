"""`python -m hatch_wizer`: the same as the `hatch-wizer` command."""

from .cli import entrypoint

if __name__ == "__main__":
    entrypoint()
