"""The warm server: the model kept loaded between commands in one background process per
data home (``server``), the socket's rules (``protocol``) and the commands' side of it
(``client``). Above the engine, below the CLI."""
