"""Tiny random models for tests and benchmarks: a chat LLM and a LLaVA-style vision-language model
written to a folder in a second, with tokenizer, processor and chat template, so the hf generator and a
real OpenAI-compatible server (`transformers serve`) can be exercised offline, where no real weights
can be downloaded. Their answers are random words: they test plumbing, never quality."""

from __future__ import annotations

from pathlib import Path


def _word_tokenizer(words: str, extra_special: tuple[str, ...] = ()):
    """A word-level tokenizer over `words` (no token_type_ids, which generate() would refuse)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator([words], trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "<s>", "</s>",
                                                                              *extra_special]))
    extra = {"extra_special_tokens": {"image_token": "<image>"}} if "<image>" in extra_special else {}
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>",
                                   eos_token="</s>", model_input_names=["input_ids", "attention_mask"], **extra)


def tiny_chat_model(folder: str | Path) -> Path:
    """A 2-layer random Llama with a chat template: loads in a second."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = _word_tokenizer("the a harbour with boats river tanks planes airport answer context question image")
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] if m['content'] is string "
                         "else m['content'][0]['text'] }}\n{% endfor %}assistant:")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return Path(folder)


def tiny_llava(folder: str | Path) -> Path:
    """A random LLaVA (tiny CLIP vision tower + 1-layer Llama) with its processor and chat template;
    the processor expands an image into the tower's 16 patches + CLS = 17 tokens."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    torch.manual_seed(0)
    tok = _word_tokenizer("the a harbour with boats river answer context question what is moored here", ("<image>",))
    template = ("{% for m in messages %}{{ m['role'] }}: {% for p in m['content'] %}{% if p['type'] == 'image' %}"
                "<image> {% else %}{{ p['text'] }}{% endif %}{% endfor %}\n{% endfor %}assistant:")
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-1,
                                              image_token_index=tok.convert_tokens_to_ids("<image>"),
                                              vision_feature_select_strategy="full")).save_pretrained(folder)
    LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                   tokenizer=tok, patch_size=8, vision_feature_select_strategy="full", num_additional_image_tokens=1,
                   chat_template=template).save_pretrained(folder)
    return Path(folder)
