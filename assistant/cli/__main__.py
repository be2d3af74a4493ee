"""`python -m assistant.cli` runs `memex` (the tests start watchers this way)."""

from assistant.cli.app import main

main()
