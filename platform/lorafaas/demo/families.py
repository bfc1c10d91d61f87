"""Small random checkpoints of the model families users bring, and random LoRA adapters.

Each family's checkpoint is made with transformers' own classes and `save_pretrained`, so
its files are exactly what a real checkpoint of that family holds (transformers 5 writes
them with mode 0600). They are tiny but sized so that the family's own feature acts: the
sliding window is shorter than prompt plus output, soft-capping bounds logits that go past
it, rope scaling starts below the prompts' positions. `control_config` switches the
feature off; tests check that the greedy output then changes, so a runtime that ignored
the feature could not pass.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import Tokenizer
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lorafaas.demo.tokenizer import (
    BOS_TOKEN,
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    TokenizerSpec,
    build_tokenizer,
    iter_corpus,
)

SEED = 20261202
TOKENIZER_SPEC = TokenizerSpec(vocab_size=512, corpus_sentences=3000)
# Prompts longer than every window and original rope length below (12 to 20 tokens).
PROMPTS = (
    "the old captain found a golden key near the river and asked the baker about it",
    "my grandmother remembered the secret recipe while the friendly dog watched the door",
    "why did the clever fox hide the silver coin under the heavy box in the garden today",
)
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}" + EOS_TOKEN
                 + "\n{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}")
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 2,
         "max_position_embeddings": 256, "initializer_range": 0.1}
WINDOW = 6  # tokens: shorter than every prompt


@dataclass(frozen=True)
class Family:
    """One family's checkpoint: its config and the config with its feature switched off."""

    name: str
    model_type: str
    config: dict[str, Any]
    # What switches the feature off: config overrides, or the edits `zero_attention_bias`,
    # `no_qk_norm`, `embed_scale` (see control_model); empty: a plain family, no control.
    control: dict[str, Any]
    targets: tuple[str, ...]  # LoRA target modules
    feature: str
    # True when the control changes the logits but, by design, not the greedy argmax
    # (final-logit soft-capping is monotonic): the tests compare logits instead.
    control_by_logits: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama", "llama", {"tie_word_embeddings": False}, {},
           _ATTN + _MLP, "untied Llama 2-style", notes={"tokenizer": "sentencepiece"}),
    Family("llama3", "llama",
           {"tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8}},
           {"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}},
           ("q_proj", "v_proj"), "llama3 rope scaling, tied embeddings"),
    Family("mistral", "mistral", {"sliding_window": WINDOW, "tie_word_embeddings": False},
           {"sliding_window": None}, _ATTN, "sliding window"),
    Family("qwen2", "qwen2", {"tie_word_embeddings": True}, {"zero_attention_bias": True},
           _ATTN + _MLP, "attention biases, tied embeddings", notes={"tokenizer": "bpe"}),
    Family("qwen3", "qwen3", {"tie_word_embeddings": True}, {"no_qk_norm": True},
           _ATTN, "q/k RMS norm, tied embeddings"),
    Family("phi3", "phi3",
           {"tie_word_embeddings": False, "original_max_position_embeddings": 8,
            "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0,
                                "short_factor": [1.0 + i / 8 for i in range(8)],
                                "long_factor": [1.0 + i for i in range(8)]}},
           {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
           ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"), "fused projections, longrope"),
    Family("gemma", "gemma", {"tie_word_embeddings": True}, {"embed_scale": 1.0},
           _ATTN + _MLP, "scaled embeddings, tied"),
    Family("gemma2", "gemma2",
           {"tie_word_embeddings": True, "sliding_window": WINDOW,
            "attn_logit_softcapping": 0.5, "final_logit_softcapping": 0.5,
            "query_pre_attn_scalar": 16, "layer_types": ["sliding_attention", "full_attention"]},
           {"attn_logit_softcapping": None},
           _ATTN, "attention and final soft-capping, sliding window"),
    Family("gemma2-final-softcap", "gemma2",
           {"tie_word_embeddings": True, "final_logit_softcapping": 0.5,
            "attn_logit_softcapping": None, "query_pre_attn_scalar": 16},
           {"final_logit_softcapping": None}, _ATTN, "final-logit soft-capping",
           control_by_logits=True),
    Family("gemma2-window", "gemma2",
           {"tie_word_embeddings": True, "sliding_window": WINDOW, "attn_logit_softcapping": None,
            "final_logit_softcapping": None, "query_pre_attn_scalar": 16,
            "layer_types": ["sliding_attention", "full_attention"]},
           {"sliding_window": 4096}, _ATTN, "sliding window (alternating layers)"),
    Family("gemma3-window", "gemma3_text",
           {"tie_word_embeddings": True, "sliding_window": WINDOW, "num_hidden_layers": 3,
            "query_pre_attn_scalar": 16,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention"]},
           {"sliding_window": 4096}, _ATTN, "sliding pattern"),
    Family("gemma3", "gemma3_text",
           {"tie_word_embeddings": True, "sliding_window": WINDOW, "num_hidden_layers": 3,
            "query_pre_attn_scalar": 16,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}}},
           {"rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}}},
           _ATTN + _MLP, "local rope (sliding layers)"),
)}


@dataclass(frozen=True)
class CheckpointOptions:
    """How a family's checkpoint is written."""

    dtype: str = "float32"  # or bfloat16 / float16
    sharded: bool = False  # several safetensors shards and an index
    extra_eos: int | None = None  # a second EOS id in generation_config.json
    chat_template: str | None = "jinja"  # "jinja" file, "config" (tokenizer_config.json), None
    tokenizer: str | None = None  # "fast" (tokenizer.json), "sentencepiece", "bpe"; None: family's


def make_tokenizer() -> PreTrainedTokenizerBase:
    """The demo tokenizer, small (512 tokens) so the checkpoints stay tiny."""
    return build_tokenizer(TOKENIZER_SPEC)


def family_config(family: Family, tokenizer: PreTrainedTokenizerBase, dtype: str
                  ) -> PretrainedConfig:
    """The family's config, its vocabulary and special ids the tokenizer's."""
    values: dict[str, Any] = {**SMALL, **family.config}
    values.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                  dtype=dtype)
    return AutoConfig.for_model(family.model_type, **values)


def build_model(family: Family, tokenizer: PreTrainedTokenizerBase, dtype: str = "float32"
                ) -> PreTrainedModel:
    """The family's model with seeded random weights, in `dtype`, in eval mode."""
    torch.manual_seed(SEED)
    config = family_config(family, tokenizer, "float32")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _randomise_norms(model)
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    model.eval()
    return model


def _randomise_norms(model: PreTrainedModel) -> None:
    # Norm weights start at one (or zero for Gemma's 1 + w): random ones make q/k norms and
    # biases matter, as in trained checkpoints.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("norm.weight", ".bias")):
                parameter.normal_(mean=0.0 if "gemma" in model.config.model_type else 1.0,
                                  std=0.3)


def control_model(checkpoint_dir: Path, family: Family, dtype: str = "float32"
                  ) -> PreTrainedModel:
    """The checkpoint loaded with the family's feature switched off."""
    config_overrides = {k: v for k, v in family.control.items()
                        if not k.startswith(("zero_", "no_", "embed_"))}
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint_dir), dtype=getattr(torch, dtype),
                                                 local_files_only=True, **config_overrides)
    with torch.no_grad():
        if family.control.get("zero_attention_bias"):
            for name, parameter in model.named_parameters():
                if name.endswith(".bias"):
                    parameter.zero_()
        if family.control.get("no_qk_norm"):
            for layer in model.model.layers:
                layer.self_attn.q_norm = torch.nn.Identity()
                layer.self_attn.k_norm = torch.nn.Identity()
        if "embed_scale" in family.control:
            model.model.embed_tokens.embed_scale.fill_(family.control["embed_scale"])
    model.eval()
    return model


def make_checkpoint(family: Family, directory: Path,
                    options: CheckpointOptions = CheckpointOptions()) -> Path:
    """Write the family's checkpoint to `directory` with save_pretrained; return it."""
    tokenizer = make_tokenizer()
    model = build_model(family, tokenizer, options.dtype)
    directory.mkdir(parents=True, exist_ok=True)
    model.generation_config = _generation_config(tokenizer, options.extra_eos)
    model.save_pretrained(str(directory), max_shard_size="200KB" if options.sharded else "50GB")
    save_tokenizer_files(tokenizer, directory, options.tokenizer or family.notes.get(
        "tokenizer", "fast"), options.chat_template)
    return directory


def _generation_config(tokenizer: PreTrainedTokenizerBase, extra_eos: int | None
                       ) -> GenerationConfig:
    eos: int | list[int] = tokenizer.eos_token_id
    if extra_eos is not None:
        eos = [tokenizer.eos_token_id, extra_eos]
    # Sampling defaults as real checkpoints ship them: the platform stays greedy unless asked.
    return GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos,
                            pad_token_id=tokenizer.pad_token_id, do_sample=True,
                            temperature=0.7, top_p=0.9, top_k=20)


def set_extra_eos(checkpoint_dir: Path, token_id: int) -> None:
    """Add `token_id` to the EOS ids of the checkpoint's generation_config.json."""
    path = checkpoint_dir / "generation_config.json"
    values = json.loads(path.read_text())
    eos = values.get("eos_token_id")
    eos = eos if isinstance(eos, list) else [eos]
    values["eos_token_id"] = [*[e for e in eos if e != token_id], token_id]
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)


def save_tokenizer_files(tokenizer: PreTrainedTokenizerBase, directory: Path, kind: str,
                         chat_template: str | None) -> None:
    """The tokenizer as `kind`: tokenizer.json, SentencePiece `tokenizer.model`, or BPE
    `vocab.json` + `merges.txt`; the chat template in its own file or in the config."""
    writers: dict[str, Callable[[PreTrainedTokenizerBase, Path], None]] = {
        "fast": _save_fast, "sentencepiece": _save_sentencepiece, "bpe": _save_bpe}
    writers[kind](tokenizer, directory)
    config_path = directory / "tokenizer_config.json"
    if chat_template == "jinja":
        (directory / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    elif chat_template == "config":
        config = json.loads(config_path.read_text())
        config["chat_template"] = CHAT_TEMPLATE
        config_path.write_text(json.dumps(config, indent=2))
    for path in directory.iterdir():
        path.chmod(0o600)  # as transformers 5 writes checkpoints


def _save_fast(tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    tokenizer.save_pretrained(str(directory))
    (directory / "chat_template.jinja").unlink(missing_ok=True)


def _special_tokens_config(tokenizer_class: str, **extra: Any) -> dict[str, Any]:
    return {"tokenizer_class": tokenizer_class, "bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN,
            "unk_token": UNK_TOKEN, "pad_token": PAD_TOKEN, "model_max_length": 2048,
            "clean_up_tokenization_spaces": False, **extra}


def _save_bpe(tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    # GPT-2 style files: the byte-level BPE's vocabulary and merges, specials in the config.
    backend: Tokenizer = tokenizer.backend_tokenizer  # type: ignore[attr-defined]
    backend.model.save(str(directory))
    added = {token: backend.token_to_id(token) for token in SPECIAL_TOKENS}
    (directory / "added_tokens.json").write_text(json.dumps(added))
    (directory / "tokenizer_config.json").write_text(json.dumps(_special_tokens_config(
        "GPT2Tokenizer", add_prefix_space=False, add_bos_token=True)))


def _save_sentencepiece(tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    # A Llama-style SentencePiece model trained on the same corpus; same vocabulary size.
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(iter_corpus(TOKENIZER_SPEC)), model_writer=model,
        vocab_size=len(tokenizer), model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        byte_fallback=True, character_coverage=1.0, minloglevel=2,
        unk_piece=UNK_TOKEN, bos_piece=BOS_TOKEN, eos_piece=EOS_TOKEN, pad_piece=PAD_TOKEN)
    (directory / "tokenizer.model").write_bytes(model.getvalue())
    (directory / "tokenizer_config.json").write_text(json.dumps(_special_tokens_config(
        "LlamaTokenizer", add_bos_token=True, add_eos_token=False, legacy=False)))


def load_tokenizer(checkpoint_dir: Path) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer, as a user's code would load it."""
    return AutoTokenizer.from_pretrained(str(checkpoint_dir), local_files_only=True)


def make_adapter(checkpoint_dir: Path, directory: Path, family: Family, rank: int = 4,
                 seed: int = 1, targets: tuple[str, ...] | None = None) -> Path:
    """A random peft LoRA adapter (A and B random: it changes the output) for the checkpoint."""
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint_dir), local_files_only=True)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets or family.targets),
                        init_lora_weights=False, task_type="CAUSAL_LM")
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = checkpoint_dir.name
    peft_model.save_pretrained(str(directory), save_embedding_layers=False)
    (directory / "README.md").unlink(missing_ok=True)
    return directory


def load_reference(checkpoint_dir: Path, adapter_dir: Path, dtype: str = "float32") -> PeftModel:
    """peft's model of the checkpoint with the adapter: the reference of correctness."""
    base = AutoModelForCausalLM.from_pretrained(str(checkpoint_dir), dtype=getattr(torch, dtype),
                                                local_files_only=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    model.eval()
    return model


def greedy(model: PeftModel | PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str,
           max_tokens: int = 12, ignore_eos: bool = True) -> list[int]:
    """Greedy new tokens of `generate` for one prompt (the checkpoint's EOS ids stop it
    unless `ignore_eos`)."""
    inputs = tokenizer(prompt, return_tensors="pt")
    options: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": False,
                               "temperature": None, "top_p": None, "top_k": None,
                               "pad_token_id": tokenizer.pad_token_id}
    if ignore_eos:
        options["min_new_tokens"] = max_tokens
    with torch.inference_mode():
        output = model.generate(**inputs, **options)  # type: ignore[operator]
    return [int(t) for t in output[0, inputs["input_ids"].shape[1]:]]
