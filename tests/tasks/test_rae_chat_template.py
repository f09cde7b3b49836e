"""Stage-2 dialogues are laid out in each backbone's own chat template (issue 13, item 6): apart from the visual
tokens and the anomaly-prompt slots, the token ids are exactly ``tokenizer.apply_chat_template`` of the
dialogue, with the video's marker where the family's processor puts it. The tiny models' templates are checked
against the real families' formats, written out here."""

from __future__ import annotations

import pytest
import torch

from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.data.dialogue_schema import Turn

FAMILIES = ["qwen2_5_vl", "internvl", "llava", "llava_next"]
FRAME_SIZE = {"qwen2_5_vl": (64, 96), "internvl": (32, 32), "llava": (32, 32), "llava_next": (32, 32)}
NUM_FRAMES, NUM_PROMPTS = 4, 3

DIALOGUE = [Turn("user", "Is there any anomaly?"), Turn("assistant", "Yes.", "yesno"),
            Turn("user", "Describe the abnormal target."), Turn("assistant", "A person running left.", "target"),
            Turn("user", "When?")]

VICUNA = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the human's questions.")
#: each family's real chat format of DIALOGUE (without the video), generation prompt included
REAL_TEXT = {
    "qwen2_5_vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nIs there any anomaly?"
                  "<|im_end|>\n<|im_start|>assistant\nYes.<|im_end|>\n<|im_start|>user\nDescribe the abnormal target."
                  "<|im_end|>\n<|im_start|>assistant\nA person running left.<|im_end|>\n<|im_start|>user\nWhen?"
                  "<|im_end|>\n<|im_start|>assistant\n",
    "internvl": "<|im_start|>user\nIs there any anomaly?<|im_end|>\n<|im_start|>assistant\nYes.<|im_end|>\n"
                "<|im_start|>user\nDescribe the abnormal target.<|im_end|>\n<|im_start|>assistant\n"
                "A person running left.<|im_end|>\n<|im_start|>user\nWhen?<|im_end|>\n<|im_start|>assistant\n",
    "llava": f"<s>{VICUNA} USER: Is there any anomaly? ASSISTANT: Yes.</s>USER: Describe the abnormal target. "
             "ASSISTANT: A person running left.</s>USER: When? ASSISTANT:",
    "llava_next": "<s>[INST] Is there any anomaly? [/INST] Yes.</s>[INST] Describe the abnormal target. [/INST] "
                  "A person running left.</s>[INST] When? [/INST]",
}
#: the text each family's processor renders for one video of NUM_FRAMES frames, before expanding its placeholder
VIDEO_MARKER = {
    "qwen2_5_vl": "<|vision_start|><|video_pad|><|vision_end|>",
    "internvl": "".join(f"Frame{i + 1}: <img><IMG_CONTEXT></img>\n" for i in range(NUM_FRAMES)),
    "llava": "<image>\n",
    "llava_next": "<image>\n",
}


def _messages(turns: list[Turn], marker: str = "") -> list[dict[str, str]]:
    return [{"role": t.role, "content": (marker if i == 0 else "") + t.content} for i, t in enumerate(turns)]


@pytest.fixture(scope="module")
def adapters(tiny_backbone_dir):
    cache = {}

    def get(family: str):
        if family not in cache:
            cache[family] = load_backbone(BackboneConfig(path=str(tiny_backbone_dir(family)), dtype="float32"))
        return cache[family]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_the_tiny_template_is_the_family_format(family, adapters):
    bb = adapters(family)
    assert bb.tokenizer.chat_template, "the tiny tokenizer ships a chat template, as real checkpoints do"
    text = bb.tokenizer.apply_chat_template(_messages(DIALOGUE), tokenize=False, add_generation_prompt=True)
    assert text == REAL_TEXT[family]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("generation", [False, True])
def test_non_rae_tokens_equal_apply_chat_template(family, generation, adapters):
    bb = adapters(family)
    turns = DIALOGUE if generation else DIALOGUE[:4]
    frames = torch.randint(0, 256, (2, NUM_FRAMES, *FRAME_SIZE[family], 3), dtype=torch.uint8)
    video = bb.preprocess_video(frames)
    # a batch of two dialogues of different lengths: padding must not change the per-dialogue ids
    inputs = bb.build_dialogue_inputs([turns, turns[:1] if generation else turns[:2]], video=video,
                                      num_prompt_tokens=NUM_PROMPTS, add_generation_prompt=generation,
                                      padding_side="left" if generation else "right")
    for row, dialogue in enumerate([turns, turns[:1] if generation else turns[:2]]):
        real = inputs.attention_mask[row].bool()
        ids, visual, prompt = inputs.input_ids[row][real], inputs.visual_mask[row][real], inputs.prompt_mask[row][real]
        reference = bb.tokenizer.apply_chat_template(_messages(dialogue, VIDEO_MARKER[family]), tokenize=True,
                                                     add_generation_prompt=generation)["input_ids"]
        placeholder = set(ids[visual].tolist())
        assert len(placeholder) == 1  # the visual slots hold the family's one placeholder token
        # the non-RAE tokens: everything but the expanded visual tokens and the anomaly-prompt slots, against the
        # template's output without its (unexpanded) visual placeholder tokens
        assert ids[~(visual | prompt)].tolist() == [t for t in reference if t not in placeholder]
        assert int(visual.sum()) == bb.num_visual_tokens(video) and int(prompt.sum()) == NUM_PROMPTS
        # the prompt slots follow the visual block and open the first question
        first_prompt = int(prompt.nonzero()[0])
        assert int(visual.nonzero()[-1]) < first_prompt
        question = bb.tokenizer(dialogue[0].content, add_special_tokens=False)["input_ids"]
        after = ids[first_prompt + NUM_PROMPTS:first_prompt + NUM_PROMPTS + len(question)].tolist()
        assert after == question
