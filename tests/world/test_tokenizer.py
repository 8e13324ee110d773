"""The world tokenizer: exact round trip of world text, chat template, special tokens."""

import numpy as np
from transformers import AutoTokenizer

from dicekit import models
from dicekit.world import tasks
from dicekit.world.tokenizer import EOS, train_tokenizer


def test_world_text_round_trips_and_template_is_chatml_like(tmp_path):
    tok = train_tokenizer(tasks.vocabulary_text())
    rng = np.random.default_rng(0)
    for family in tasks.FAMILIES:
        for _ in range(100):
            task = tasks.make_task(family, rng)
            response = tasks.demonstration(task, rng)
            ids = tok(response, add_special_tokens=False)["input_ids"]
            assert tok.unk_token_id not in ids
            assert tok.decode(ids) == response
    ids = models.prompt_ids(tok, "Name 3 fruits.")
    assert tok.convert_ids_to_tokens(ids) == ["<|bos|>", "<|im_start|>", "user", "Name", "3", "fruits", ".",
                                              "<|im_end|>", "<|im_start|>", "assistant"]
    assert ids.count(tok.bos_token_id) == 1
    # the end-of-turn token closing an assistant message is the EOS the sampler stops on
    assert models.end_of_turn_id(tok, [tok.eos_token_id]) == tok.convert_tokens_to_ids(EOS) == tok.eos_token_id
    assert len({tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id}) == 4
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    assert models.prompt_ids(again, "Name 3 fruits.") == ids
    assert again.decode(again("Sure! dog, cat. Have a nice day!", add_special_tokens=False)["input_ids"]) == \
        "Sure! dog, cat. Have a nice day!"
