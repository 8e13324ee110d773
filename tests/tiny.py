"""A tiny chat model built from nothing, for tests: a BPE tokenizer trained on a few sentences
(BOS added by its post-processor, ChatML-style template, two stop tokens) and a 2-layer Llama
briefly trained to answer in short replies that end with <|im_end|>."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ("red green blue cat dog fish one two three four five apple pear plum yes no the a is and "
         "big small fast slow sun moon star tree rock water fire").split()
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def corpus(n: int = 400, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))
        out.append((q, a))
    return out


def build_tokenizer(out: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    text = [f"{q}\n{a}" for q, a in corpus()] + ["user assistant system"] * 5
    tok.train_from_iterator(text, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>",
                                   additional_special_tokens=["<|im_start|>", "</s>"])
    fast.chat_template = TEMPLATE
    fast.save_pretrained(str(out))
    return fast


def build_model(out: Path, tok, seed: int, train_steps: int, lr: float = 3e-3, hidden_size: int = 32,
                num_heads: int = 4):
    """``hidden_size // num_heads`` is the head size: vLLM's CPU attention needs one of 32, 64, ...."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=2, num_attention_heads=num_heads, num_key_value_heads=max(1, num_heads // 2),
                      max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    if train_steps:
        from dicekit.models import prompt_ids

        end = tok.convert_tokens_to_ids("<|im_end|>")
        seqs = []
        for q, a in corpus(seed=seed):
            p = prompt_ids(tok, q)
            r = tok(a, add_special_tokens=False)["input_ids"] + [end]
            seqs.append((p, r))
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        rng = random.Random(seed)
        model.train()
        for _ in range(train_steps):
            batch = rng.sample(seqs, 16)
            width = max(len(p) + len(r) for p, r in batch)
            ids = torch.full((16, width), tok.pad_token_id)
            labels = torch.full((16, width), -100)
            mask = torch.zeros((16, width), dtype=torch.long)
            for i, (p, r) in enumerate(batch):
                s = p + r
                ids[i, : len(s)] = torch.tensor(s)
                labels[i, len(p): len(s)] = torch.tensor(r)
                mask[i, : len(s)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    model.generation_config = GenerationConfig(eos_token_id=[tok.eos_token_id, tok.convert_tokens_to_ids("</s>")],
                                               bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def build_world(root: Path, **arch) -> dict:
    """policy (π_0) and reference (π_{-1}) folders, a prompts file and an offline pairs file.
    ``arch``: ``hidden_size`` / ``num_heads`` of both models (see build_model)."""
    root.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(root / "tok")
    ref = build_model(root / "reference", tok, seed=1, train_steps=60, **arch)
    pol = build_model(root / "policy", tok, seed=1, train_steps=90, **arch)
    rng = random.Random(5)
    prompts = root / "prompts.jsonl"
    with prompts.open("w") as f:
        for i in range(12):
            q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
            f.write(json.dumps({"prompt_id": f"q{i:03d}", "prompt": q}) + "\n")
    offline = root / "offline.jsonl"
    with offline.open("w") as f:
        for i in range(30):
            q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
            c = " ".join(rng.choice(WORDS) for _ in range(3))
            r = " ".join(rng.choice(WORDS) for _ in range(1))
            f.write(json.dumps({"prompt": q, "chosen": c, "rejected": r}) + "\n")
    return {"policy": str(pol), "reference": str(ref), "prompts": str(prompts), "offline": str(offline), "root": root}
