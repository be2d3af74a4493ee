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

from assistant.engine.answering import Answer
from assistant.engine.engine import Engine
from assistant.engine.reflection import Reflection, period_range, weekly_counts
from assistant.engine.results import EngineError, Stopped
from assistant.engine.retrieval import RELEVANCE_FLOOR, relevant_sentences

__all__ = [
    "RELEVANCE_FLOOR",
    "Answer",
    "Engine",
    "EngineError",
    "Reflection",
    "Stopped",
    "period_range",
    "relevant_sentences",
    "weekly_counts",
]
