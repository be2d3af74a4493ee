"""The answer engine: everything between the ingest store, the LongNet memory and a
person's question, and nothing of how it is shown (the CLI and the TUI use it; it
imports neither).

Parts, by responsibility:
- ``engine``: the ``Engine`` (one data home's store, models and memory; lazy loads);
- ``retrieval``, ``answering``, ``decoding``, ``memory``, ``reflection``: its methods;
- ``dates`` (a question's dates), ``prompting`` (sentences, notes, messages, reflection
  facts), ``stems`` (answer stems), ``grounding`` (grounded decoding);
- ``conversations`` (the chat history database), ``evaluation`` (scoring answers),
  ``memory_build`` (building the memory, its speed and ETA), ``training`` (the model
  trained on the user's notes).
"""

# Names are loaded on first use (PEP 562): a command that needs one helper of the engine
# (or none: `memex ask` talking to the warm server) does not import the whole of it.
_EXPORTS = {
    "Answer": "assistant.engine.answering",
    "Engine": "assistant.engine.engine",
    "Reflection": "assistant.engine.reflection",
    "period_range": "assistant.engine.reflection",
    "weekly_counts": "assistant.engine.reflection",
    "EngineError": "assistant.engine.results",
    "Stopped": "assistant.engine.results",
    "RELEVANCE_FLOOR": "assistant.engine.retrieval",
    "relevant_sentences": "assistant.engine.retrieval",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'assistant.engine' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
