"""A word-level tokenizer for the task world, wrapped as a chat tokenizer.

Word-level on purpose: every world word is one token, so a from-scratch model cannot drift into
sub-word garbage that the implicit reward then scores highly (a failure seen with byte-level BPE),
and the log-ratio of a response is a sum over a handful of meaningful decisions. Pre-tokenisation
splits on whitespace and punctuation; decoding joins with spaces and removes the space before
``. , ! ?``, so the world's canonical response text round-trips exactly (tests/world).

Chat format (ChatML-like): ``<|bos|><|im_start|>user {prompt}<|im_end|><|im_start|>assistant {response}<|im_end|>``.
``<|im_end|>`` is the end-of-turn and EOS token (what the sampler emits to stop); ``<|bos|>`` is
put in front of every encode; ``<|pad|>`` is a separate padding token.
"""

from __future__ import annotations

BOS, EOS, PAD, UNK, IM_START = "<|bos|>", "<|im_end|>", "<|pad|>", "[UNK]", "<|im_start|>"
SPECIAL_TOKENS = [PAD, UNK, BOS, IM_START, EOS]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


def train_tokenizer(texts: list[str]):
    """A PreTrainedTokenizerFast whose vocabulary is every word and punctuation mark in ``texts``
    (plus the chat roles and the special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1, show_progress=False)
    tok.train_from_iterator(list(texts) + ["system user assistant"], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=[IM_START], chat_template=CHAT_TEMPLATE, model_max_length=256,
        clean_up_tokenization_spaces=False,
    )
