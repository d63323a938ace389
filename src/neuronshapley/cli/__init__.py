"""The ``neuronshapley`` command: parses arguments, calls the workflows, prints."""

from neuronshapley.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
