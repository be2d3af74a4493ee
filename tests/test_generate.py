"""Generation reading the memory: same tokens as a full forward pass would choose, the
memory left unchanged, sampling controls, stops and streaming."""

from __future__ import annotations

import pytest
import torch

from longnet.generate import pick_token
from longnet.memory import Memory
from longnet.model import LongNetConfig, LongNetLM


pytestmark = pytest.mark.usefixtures("single_torch_thread")



def small_model(mode="dilated", eos=None) -> LongNetLM:
    torch.manual_seed(0)
    config = LongNetConfig(vocab_size=64, hidden_size=48, num_layers=2, num_heads=6,
                           num_kv_heads=2, head_dim=8, intermediate_size=64,
                           segment_lengths=(16, 32, 64, 128), dilation_rates=(1, 2, 4, 8),
                           position_mode=mode, eos_token_id=eos)
    return LongNetLM(config).eval()


def greedy_by_full_forward(model, tokens: list[int], steps: int) -> list[int]:
    out = []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([tokens + out]))[0, -1]
        out.append(int(logits.argmax()))
    return out


@pytest.mark.parametrize("mode", ["absolute", "dilated"])
def test_greedy_reads_the_whole_history_and_leaves_the_memory_alone(mode):
    model = small_model(mode)
    history = torch.randint(0, 64, (66,), generator=torch.Generator().manual_seed(2)).tolist()
    memory = model.memory()
    memory.append(history)
    before = {k: v.clone() for k, v in memory.state_dict().items()}
    prompt = [5, 9, 13]  # 66 + 3 + 6 stays inside the local segment [64, 80)
    answer = memory.generate(prompt, max_new_tokens=6)
    assert answer == greedy_by_full_forward(model, history + prompt, 6)
    assert memory.tokens == 66
    after = memory.state_dict()
    assert before.keys() == after.keys()
    for key, tensor in before.items():
        assert torch.equal(tensor, after[key]), key
    # And the memory still reads on exactly as if no turn had happened.
    assert memory.generate(prompt, max_new_tokens=6) == answer


def test_a_turn_crossing_a_local_segment_still_sees_itself():
    model = small_model("absolute")
    memory = model.memory()
    memory.append(list(range(60)))  # local segment [48, 64): the turn crosses into [64, 80)
    turn = memory.fork()
    turn.append(list(range(10, 40)))  # 30 turn tokens
    local = turn.states[0][0]
    assert local.start == 48
    rows = turn.state_dict()["layers.0.levels.0.k"]
    assert rows.shape[2] == 60 + 30 - 48  # every row from the segment start, none cut
    assert memory.tokens == 60 and memory.states[0][0].start == 48


def test_stops_streaming_and_limits():
    model = small_model()
    memory = model.memory()
    memory.append(list(range(30)))
    free = memory.generate([1, 2, 3], max_new_tokens=8)
    assert len(free) == 8
    streamed = []
    assert memory.generate([1, 2, 3], max_new_tokens=8, on_token=streamed.append) == free
    assert streamed == free
    stop_at = free[3]
    stopped = memory.generate([1, 2, 3], max_new_tokens=8, stop_ids=[stop_at])
    assert stopped == free[:free.index(stop_at)]
    eos_model = small_model(eos=stop_at)
    eos_memory = eos_model.memory()
    eos_memory.append(list(range(30)))
    assert eos_memory.generate([1, 2, 3], max_new_tokens=8) == stopped
    assert memory.generate([1, 2, 3], max_new_tokens=8, on_token=lambda t: False) == free[:1]
    assert memory.generate([1, 2, 3], max_new_tokens=0) == []
    with pytest.raises(ValueError, match="non-empty"):
        memory.generate([], max_new_tokens=3)


def test_sampling_is_seeded_and_top_p_narrows():
    model = small_model()
    memory = model.memory()
    memory.append(list(range(20)))
    a = memory.generate([4, 5], max_new_tokens=10, temperature=1.5, seed=7)
    b = memory.generate([4, 5], max_new_tokens=10, temperature=1.5, seed=7)
    greedy = memory.generate([4, 5], max_new_tokens=10)
    assert a == b and a != greedy
    assert memory.generate([4, 5], max_new_tokens=10, temperature=1.5, top_p=1e-6,
                           seed=3) == greedy
    logits = torch.tensor([0.0, 5.0, 4.9, -3.0])
    picks = {pick_token(logits, 1.0, 0.9, torch.Generator().manual_seed(i)) for i in range(40)}
    assert picks == {1, 2}
    with pytest.raises(ValueError):
        pick_token(logits, -1.0)


def test_a_chooser_replaces_the_greedy_choice():
    """``choose`` (constrained decoding) sees each step's logits and picks the token;
    the next step reads the token it picked."""
    model = small_model()
    memory = model.memory()
    memory.append(list(range(20)))
    seen = []

    def second_best(logits):
        seen.append(logits.clone())
        return int(torch.topk(logits, 2).indices[1])

    answer = memory.generate([3, 4], max_new_tokens=4, choose=second_best)
    assert len(seen) == 4
    assert answer == [int(torch.topk(logits, 2).indices[1]) for logits in seen]
    # each step's logits are those of the prompt plus the chosen tokens so far
    with torch.no_grad():
        full = model(torch.tensor([list(range(20)) + [3, 4] + answer]))[0]
    for step, logits in enumerate(seen):
        torch.testing.assert_close(logits, full[21 + step], rtol=1e-4, atol=1e-4)


def test_remember_appends_the_turn():
    model = small_model()
    memory = model.memory()
    memory.append(list(range(20)))
    answer = memory.generate([7, 8], max_new_tokens=4, remember=True)
    assert memory.tokens == 20 + 2 + len(answer)
    fresh = model.memory()
    fresh.append(list(range(20)) + [7, 8] + answer)
    assert memory.stream_hash == fresh.stream_hash


def test_a_fork_cannot_be_saved(tmp_path):
    memory = small_model().memory()
    memory.append([1, 2, 3])
    with pytest.raises(RuntimeError, match="fork"):
        memory.fork().save(tmp_path / "m")


@pytest.mark.real_model
def test_real_model_answers_from_its_memory(model_dir, tokenizer, tmp_path):
    """End to end: read a note, save and reload the memory, ask about the note."""
    model = LongNetLM.from_pretrained(model_dir)
    note = ("Journal, 3 May. I rented a storage unit on Mill Lane today. "
            "The door code for the storage unit is 4812. I stored the bikes there.\n")
    memory = model.memory()
    memory.append(tokenizer(note)["input_ids"], return_logits=False)
    memory.save(tmp_path / "memory")
    memory = Memory.load(tmp_path / "memory", model)
    question = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the door code for my storage unit?"}],
        add_generation_prompt=True, tokenize=False)
    prompt = tokenizer(question)["input_ids"]
    streamed = []
    answer = memory.generate(prompt, max_new_tokens=24, on_token=streamed.append)
    text = tokenizer.decode(answer)
    assert streamed == answer
    assert "4812" in text, text
    assert memory.tokens == len(tokenizer(note)["input_ids"])
