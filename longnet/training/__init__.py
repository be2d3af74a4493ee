"""Fine-tuning a ``LongNetLM`` on one long token stream (a person's own notes).

Next-token training with the dilated model over long windows (default 16K tokens on
the CPU, 64K on a GPU), so that the far levels see real distances:

- LoRA adapters (peft) on the attention projections plus the level gates by default;
  ``full=True`` trains every weight instead.
- Per-block gradient checkpointing, a chunked loss (the logits of a 64K window would
  take 12 GB), bf16 autocast on CUDA (fp32 on the CPU: without native bf16 matmul it
  is slower there), gradient accumulation, AdamW with linear warmup + cosine decay.
- A recall curriculum: a stated share of the windows are synthetic long-range recall
  examples (a fact placed in the first half of the window, a question and its answer
  at the end, loss on the answer only), built from ``RecallItem``s the caller makes
  from the user's own entries and passkeys.
- A held-out tail of the stream for validation perplexity, before and after.
- Checkpoints every N steps (trainable weights, optimizer, scheduler, RNG, data
  position; written to a temp file, fsynced, renamed) that resume exactly after
  Ctrl-C or a kill: which window a micro-step reads is a pure function of (seed,
  micro-step), so a resumed run sees the data an uninterrupted one would.

The result is an adapter (``save_adapter`` / ``load_adapter``): the LoRA factors and
gates (or all weights for ``full``), merged into a fresh model at load time.

Modules
-------
``config``      the run's settings (``TrainConfig``) and its errors.
``curriculum``  which window each micro-step reads, recall examples, the held-out tail.
``losses``      a window's loss, perplexity, and what keeps them within memory.
``adapters``    what a run trains (LoRA, gates) and the adapter it leaves behind.
``loop``        ``train()``: optimizer, checkpoints that resume exactly, progress.
``reader``      ``train_reader()``: the reader (``longnet.reader``) learns to read memories
                the frozen model wrote; one turn per example, nothing of the history reread.
"""

from longnet.training.adapters import (
    ADAPTER_FORMAT,
    ADAPTER_META,
    ADAPTER_WEIGHTS,
    GATE_PARAMETER,
    LORA_TARGETS,
    add_lora,
    gate_parameters,
    load_adapter,
    load_adapter_as_reader,
    merge_lora,
    prepare_model,
    read_adapter_meta,
    save_adapter,
    trainable_state,
)
from longnet.training.config import TrainConfig, TrainingError, TrainingInterrupted, default_seq_len
from longnet.training.curriculum import (
    RecallItem,
    RecallSource,
    Window,
    WindowPlan,
    holdout_tokens,
    recall_fits,
    recall_window,
    stream_digest,
)
from longnet.training.loop import (
    CHECKPOINT_FILE,
    TrainProgress,
    TrainResult,
    atomic_torch_save,
    lr_factor,
    make_optimizer,
    read_checkpoint,
    train,
)
from longnet.training.losses import (
    HEAP_BLOCK_LIMIT,
    CheckpointedBlocks,
    hidden_states,
    keep_heap_small,
    perplexity,
    window_loss,
)
from longnet.training.reader import (
    READER_CHECKPOINT,
    ReaderProgress,
    ReaderResult,
    Turn,
    answer_accuracy,
    train_reader,
    turn_loss,
)

__all__ = [
    "ADAPTER_FORMAT",
    "ADAPTER_META",
    "ADAPTER_WEIGHTS",
    "CHECKPOINT_FILE",
    "GATE_PARAMETER",
    "HEAP_BLOCK_LIMIT",
    "LORA_TARGETS",
    "READER_CHECKPOINT",
    "CheckpointedBlocks",
    "ReaderProgress",
    "ReaderResult",
    "RecallItem",
    "RecallSource",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainingError",
    "TrainingInterrupted",
    "Turn",
    "Window",
    "WindowPlan",
    "add_lora",
    "answer_accuracy",
    "atomic_torch_save",
    "default_seq_len",
    "gate_parameters",
    "hidden_states",
    "holdout_tokens",
    "keep_heap_small",
    "load_adapter",
    "load_adapter_as_reader",
    "lr_factor",
    "make_optimizer",
    "merge_lora",
    "perplexity",
    "prepare_model",
    "read_adapter_meta",
    "read_checkpoint",
    "recall_fits",
    "recall_window",
    "save_adapter",
    "stream_digest",
    "train",
    "train_reader",
    "trainable_state",
    "turn_loss",
    "window_loss",
]
