"""`memex train` (the reader), `memex train --window` and `memex train --status` over a real
store (real files, SQLite, the real tokenizer) with the tiny random Llama of test_engine as
the model: what is trained lands beside the memory and never changes it, Ctrl-C leaves a
checkpoint that the next run resumes, the reader goes on from the last one."""

from __future__ import annotations

import json

import pytest
from test_engine import tiny_model_dir  # noqa: F401  (fixture)
from typer.testing import CliRunner

from assistant.cli import app

runner = CliRunner()

DAYS = {
    "2024-01-04": "Started the pottery class at Kelham Island. The teacher, Ruth, made us "
                  "wedge clay for an hour before we touched the wheel.",
    "2024-01-11": "Second pottery class. My first bowl collapsed twice; the third one stood up "
                  "and Ruth called it honest.",
    "2024-01-19": "Biscuit ate a whole tea towel and spent the night being sorry for himself. "
                  "Vet says he will be fine.",
    "2024-02-02": "Ran the Round Walk loop in 58 minutes, my best time since the ankle. "
                  "Cold, bright, and the reservoir was frozen at the edges.",
    "2024-02-14": "Maya and I cooked the mushroom risotto from the green book. Too much "
                  "lemon, still good. We talked about Lisbon in May.",
    "2024-02-20": "Work: the Fernleaf rota tool finally shipped. Priya bought cake for the "
                  "whole floor and nobody found a bug all afternoon.",
    "2024-03-01": "Planted the first broad beans at the allotment. Plot 14 still has the "
                  "old rhubarb crown that Mr Okafor swears is forty years old.",
    "2024-03-09": "Read half of The Left Hand of Darkness on the train to Leeds. The "
                  "winter planet feels very close this month.",
}


@pytest.fixture
def trained_home(tmp_path, home, tokenizer, tiny_model_dir):  # noqa: F811
    import ingest
    from assistant.config import set_value

    root = tmp_path / "journal"
    root.mkdir()
    for day, text in DAYS.items():
        (root / f"{day}.md").write_text((text + "\n") * 3, encoding="utf-8")
    store = ingest.open_store(home)
    ingest.add_source(store, root)
    ingest.run(store, tokenizer, embed=False)
    store.close()
    set_value(home, "model", str(tiny_model_dir))
    set_value(home, "embeddings", "false")
    set_value(home, "today", "2024-04-01")
    return home


def invoke(home, *args):
    return runner.invoke(app, ["--home", str(home), *args])


def json_of(result) -> dict:
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception  # the traceback, not just an exit code
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


TRAIN = ("train", "--window", "--steps", "2", "--seq-len", "512", "--rank", "4", "--checkpoint-every", "1",
         "--recall-ratio", "1", "--device", "cpu")
SHORT_TRAIN = ("train", "--window", "--steps", "2", "--seq-len", "256", "--rank", "4", "--no-recall",
               "--checkpoint-every", "1", "--device", "cpu")


def test_train_saves_the_adapter_and_leaves_the_memory_as_it_was(trained_home, tiny_model_dir):  # noqa: F811
    import ingest
    from assistant.engine.trained import apply_trained_reader, train_dir
    from longnet import LongNetLM, Memory

    status = json_of(invoke(trained_home, "train", "--status", "--json"))
    assert status["trained"] is False and status["in_progress"] is None
    assert status["reader"] == "none" and status["examples_seen"] is None
    invoke(trained_home, "memory", "build")  # a memory written by the base weights
    memory_dir = trained_home / "memory"
    before = {p.name: p.read_bytes() for p in sorted(memory_dir.iterdir()) if p.is_file()}
    assert "memory.json" in before and len(before) >= 2

    meta = json_of(invoke(trained_home, *TRAIN, "--json"))
    stream_tokens = ingest.open_store(trained_home).stream.__len__()
    assert meta["steps"] == 2 and meta["stream"]["tokens"] == stream_tokens
    assert meta["stream"]["train_tokens"] + meta["stream"]["validation_tokens"] == stream_tokens
    assert meta["ppl_before"] > 1 and meta["ppl_after"] > 1
    assert meta["recall_windows"] == 2  # every window a recall example (ratio 1)
    assert (train_dir(trained_home) / "adapter.safetensors").is_file()
    assert "stays as it is" in meta["memory_note"]

    status = json_of(invoke(trained_home, "train", "--status", "--json"))
    assert status["trained"] is True and status["steps"] == 2 and status["kind"] == "lora"
    assert status["ppl_before"] == meta["ppl_before"] and status["new_tokens_since"] == 0
    assert status["reader"] == "trained" and status["examples_seen"] == 2
    assert status["trained_up_to"] == stream_tokens and status["wall_s"] > 0
    text = invoke(trained_home, "train", "--status")
    assert "perplexity:" in text.output and "before" in text.output

    # Training wrote nothing into the memory: the same files, byte for byte, still valid.
    after = {p.name: p.read_bytes() for p in sorted(memory_dir.iterdir()) if p.is_file()}
    assert after == before
    memory_status = json_of(invoke(trained_home, "memory", "status", "--json"))
    assert memory_status["rebuild_needed"] is None and memory_status["tokens"] == stream_tokens

    # What was trained is the model's reader; the writer (the weights' digest) is the base.
    model = LongNetLM.from_pretrained(tiny_model_dir, device="cpu")
    base_hash = model.weights_hash
    assert apply_trained_reader(model, trained_home) is True
    assert model.reader is not None and model.weights_hash == base_hash
    memory = Memory.load(memory_dir, model)  # no mismatch: the memory is the writer's
    assert memory.stream_offset == stream_tokens
    built = invoke(trained_home, "memory", "build")
    assert built.exit_code == 0
    saved = json.loads((memory_dir / "memory.json").read_text())
    assert saved["weights_hash"] == base_hash


def test_ctrl_c_keeps_a_checkpoint_and_the_next_run_resumes(trained_home, monkeypatch):
    import longnet.training.loop as train_mod

    real_loss = train_mod.window_loss
    calls = []

    def interrupted(*args, **kwargs):
        import torch

        calls.append(torch.is_grad_enabled())  # validation runs without grad
        if sum(calls) == 2:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_mod, "window_loss", interrupted)
    stopped = invoke(trained_home, *SHORT_TRAIN)
    assert stopped.exit_code == 130, stopped.output
    assert "stopped at step 1/2: checkpoint saved" in stopped.output
    status = json_of(invoke(trained_home, "train", "--status", "--json"))
    assert status["in_progress"]["step"] == 1 and status["trained"] is False

    monkeypatch.setattr(train_mod, "window_loss", real_loss)
    resumed = invoke(trained_home, "train", "--window", "--device", "cpu")  # the run's options
    assert resumed.exit_code == 0, resumed.output
    assert "resuming at step 1/2" in resumed.output
    status = json_of(invoke(trained_home, "train", "--status", "--json"))
    assert status["trained"] is True and status["steps"] == 2 and status["in_progress"] is None


def test_clear_errors_without_data_or_with_bad_options(home):
    empty = invoke(home, "train", "--window", "--steps", "1")
    assert empty.exit_code == 1 and "nothing ingested" in empty.output
    bad = invoke(home, "train", "--window", "--dtype", "float8")
    assert bad.exit_code == 1 and "dtype" in bad.output
    if not __import__("torch").cuda.is_available():
        no_gpu = invoke(home, "train", "--window", "--device", "cuda")
        assert no_gpu.exit_code == 1 and "no CUDA device" in no_gpu.output
    no_memory = invoke(home, "train", "--steps", "1")  # the reader needs a built memory
    assert no_memory.exit_code == 1 and "memex memory build" in no_memory.output
    window_only = invoke(home, "train", "--seq-len", "512")
    assert window_only.exit_code == 1 and "--window" in window_only.output
    assert "Traceback" not in empty.output + bad.output + no_memory.output + window_only.output


def test_train_reader_learns_against_the_memory_and_goes_on_from_the_last(trained_home, tiny_model_dir):  # noqa: F811
    from assistant.engine.trained import apply_trained_reader
    from longnet import LongNetLM

    refused = invoke(trained_home, "train", "--steps", "2")
    assert refused.exit_code != 0 and "memex memory build" in refused.output
    invoke(trained_home, "memory", "build")
    memory_dir = trained_home / "memory"
    before = {p.name: p.read_bytes() for p in sorted(memory_dir.iterdir()) if p.is_file()}

    meta = json_of(invoke(trained_home, "train", "--steps", "3", "--json"))
    assert meta["examples_seen"] == 3 and meta["sentences"] > 0
    assert meta["started_from"] == "none"  # the generic reader is for the bundled model
    assert meta["trained_up_to"] == json_of(invoke(trained_home, "memory", "status",
                                                   "--json"))["tokens"]
    assert meta["writer"]["weights_hash"] == LongNetLM.from_pretrained(
        tiny_model_dir, device="cpu").weights_hash
    assert (trained_home / "reader" / "reader.safetensors").is_file()
    assert not (trained_home / "reader" / "run").exists()  # the run's checkpoint is gone
    status = json_of(invoke(trained_home, "train", "--status", "--json"))
    assert status["reader"] == "trained" and status["reader_kind"] == "turns"
    assert status["examples_seen"] == 3

    # incremental: the next run goes on from this reader
    again = json_of(invoke(trained_home, "train", "--reader", "--steps", "2", "--json"))  # old flag
    assert again["examples_seen"] == 5 and again["wall_s"] >= meta["wall_s"]
    after = {p.name: p.read_bytes() for p in sorted(memory_dir.iterdir()) if p.is_file()}
    assert after == before  # the memory was only read
    model = LongNetLM.from_pretrained(tiny_model_dir, device="cpu")
    assert apply_trained_reader(model, trained_home) is True  # the engine reads with it
    assert model.reader.meta["examples_seen"] == 5
    shown = invoke(trained_home, "train", "--steps", "1")
    assert shown.exit_code == 0, shown.output
    assert "reader trained on 6 examples in all" in shown.output
    assert "The memory is unchanged." in shown.output


def test_the_reader_setting_chooses_which_reader_answers(trained_home):
    from assistant.config import ConfigError, load_config, set_value
    from assistant.engine import Engine
    from assistant.engine.results import EngineError

    assert load_config(trained_home).reader == "auto"
    with pytest.raises(ConfigError, match="must be one of"):
        set_value(trained_home, "reader", "clever")
    set_value(trained_home, "reader", "trained")  # none trained yet: answers say so
    with pytest.raises(EngineError, match="run `memex train`"):
        Engine(trained_home).longnet_model  # noqa: B018
    # the generic reader learned against the bundled model's writer, not this tiny one
    set_value(trained_home, "reader", "generic")
    with pytest.raises(EngineError, match="no generic reader for this model"):
        Engine(trained_home).longnet_model  # noqa: B018
    set_value(trained_home, "reader", "none")
    assert Engine(trained_home).longnet_model.config is not None


def test_ctrl_c_stops_the_reader_training_and_the_next_run_goes_on(trained_home, monkeypatch):
    import longnet.training.reader as reader_mod

    invoke(trained_home, "memory", "build")
    real_loss = reader_mod.turn_loss
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(reader_mod, "turn_loss", interrupted)
    stopped = invoke(trained_home, "train", "--steps", "3")
    assert stopped.exit_code == 130, stopped.output
    assert "stopped at example 1/3: checkpoint saved" in stopped.output
    assert not (trained_home / "reader" / "reader.json").exists()  # nothing saved as done
    monkeypatch.setattr(reader_mod, "turn_loss", real_loss)
    meta = json_of(invoke(trained_home, "train", "--steps", "3", "--json"))
    assert meta["examples_seen"] == 3
    assert not (trained_home / "reader" / "run").exists()
