"""Tiny random backbones and real PEFT adapters for tests: no downloads, seconds to build."""

from __future__ import annotations

import json
from pathlib import Path

LLAMA_TARGETS = ["q_proj", "v_proj"]
T5_TARGETS = ["q", "v"]


def build_char_tokenizer(path: Path, vocab_size: int = 128) -> None:
    """A character-level fast tokenizer (ids < vocab_size) saved beside a tiny model."""
    import string

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<s>"]
    chars = [c for c in string.printable if c not in "\x0b\x0c\r"]
    vocab = {t: i for i, t in enumerate((specials + chars)[:vocab_size])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="<s>")
    fast.save_pretrained(str(path))


def build_llama(path: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, bos_token_id=3)
    LlamaForCausalLM(cfg).save_pretrained(str(path))
    build_char_tokenizer(path)
    return path


def build_t5(path: Path) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=4, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(cfg).save_pretrained(str(path))
    build_char_tokenizer(path)
    return path


def make_adapter(base: Path, out: Path, r: int = 4, alpha: float = 8, targets=None, seed: int = 0,
                 use_rslora: bool = False, use_dora: bool = False, sidecar: dict | None = None,
                 rank_pattern: dict | None = None, base_name: str | None = None) -> Path:
    """A real PEFT LoRA adapter on ``base`` with random non-zero A and B."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cfg = AutoConfig.from_pretrained(str(base))
    seq2seq = bool(getattr(cfg, "is_encoder_decoder", False))
    model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(str(base))
    targets = targets or (T5_TARGETS if seq2seq else LLAMA_TARGETS)
    torch.manual_seed(seed)
    lc = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, init_lora_weights=False,
                    use_rslora=use_rslora, use_dora=use_dora, rank_pattern=rank_pattern or {},
                    task_type="SEQ_2_SEQ_LM" if seq2seq else "CAUSAL_LM")
    pm = get_peft_model(model, lc)
    with torch.no_grad():  # make B clearly non-zero and distinct per seed
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * 0.1)
    pm.save_pretrained(str(out))
    if base_name is not None:
        c = json.loads((out / "adapter_config.json").read_text())
        c["base_model_name_or_path"] = base_name
        (out / "adapter_config.json").write_text(json.dumps(c))
    if sidecar:
        (out / "scalectl.json").write_text(json.dumps(sidecar))
    return out


def write_bbh(directory: Path, tasks: dict[str, list[dict[str, str]]]) -> Path:
    """A directory of BBH-format task files (``{"examples": [...]}``), one per task name."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    for name, examples in tasks.items():
        (directory / f"{name}.json").write_text(json.dumps({"examples": examples}))
    return directory


def write_two_task_bbh(directory: Path) -> Path:
    """Two small BBH-format tasks (``mix_a``: 17 examples, ``mix_b``: 16), enough for a support set and queries."""
    return write_bbh(directory, {
        "mix_a": [{"input": f"sort these: c{i} a b" if i % 2 else f"add {i} and 2",
                   "target": "a b c" if i % 2 else str(i + 2)} for i in range(17)],
        "mix_b": [{"input": f"is {i} even?", "target": "yes" if i % 2 == 0 else "no"} for i in range(16)]})
