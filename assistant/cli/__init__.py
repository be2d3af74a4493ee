"""The `memex` command line: one module per command group (``ingest``, ``memory``,
``ask``, ``reflect``, ``chat``, ``export``, ``config``, ``model``, ``train``), the app and
its global options (``app``), and what they share (``common``). ``memory_distributed``
is the torchrun launcher of `memex memory build --distributed`.

The CLI calls the answer engine and opens the TUI; neither imports it.
"""

from assistant.cli.app import app, main

__all__ = ["app", "main"]
