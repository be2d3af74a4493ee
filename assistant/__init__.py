"""memex assistant: the answer engine, the Typer CLI and the Textual TUI."""
