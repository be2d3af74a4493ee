"""Shared fixtures.

- ``home``: a private, empty data home in a temp dir; ``MEMEX_HOME`` points at it.
- ``model_dir`` / ``tokenizer``: the real bundled model, converted once per machine
  into a cache shared by all tests (``MEMEX_MODEL_CACHE``), so only the first test
  run pays for the GGUF conversion.
- ``no_network``: any attempt to open an internet socket fails the test.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_MODEL_CACHE = Path(os.environ.get("MEMEX_TEST_MODEL_CACHE", REPO / ".pytest_cache" / "models"))

# Set before any test imports memex code, so every test shares the converted model.
os.environ["MEMEX_MODEL_CACHE"] = str(TEST_MODEL_CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Commands answer in-process: no test leaves a warm server behind, except those of
# test_server.py, which start and stop their own.
os.environ["MEMEX_NO_SERVER"] = "1"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "memex-home"
    monkeypatch.setenv("MEMEX_HOME", str(path))
    import assistant.home

    monkeypatch.setattr(assistant.home, "_current_home", None)
    return path


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from longnet.weights import resolve_model_dir

    return resolve_model_dir(None, TEST_MODEL_CACHE)


@pytest.fixture(scope="session")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


class NetworkBlocked(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Fail on any socket that could leave the machine (AF_UNIX stays allowed)."""
    real_socket = socket.socket
    attempts: list[tuple] = []

    class GuardedSocket(real_socket):
        def __init__(self, family=socket.AF_INET, *args, **kwargs):
            if family in (socket.AF_INET, socket.AF_INET6):
                attempts.append((family, args))
                raise NetworkBlocked(f"network socket opened (family={family})")
            super().__init__(family, *args, **kwargs)

    def guarded_create_connection(address, *args, **kwargs):
        attempts.append(("create_connection", address))
        raise NetworkBlocked(f"network connection attempted to {address}")

    def guarded_getaddrinfo(host, *args, **kwargs):
        attempts.append(("getaddrinfo", host))
        raise NetworkBlocked(f"DNS lookup attempted for {host}")

    monkeypatch.setattr(socket, "socket", GuardedSocket)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield attempts


@pytest.fixture(scope="module")
def single_torch_thread():
    """For modules of tiny tensors: on a shared, busy CPU, waking a second thread for
    each small op costs far more than the op itself."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
