"""Dialogue assembly (SPEC §2): chat markup, token layout with visual tokens and K prompt slots, the
language-model forward with labels, and generation.

The token sequence is the backbone's own chat template (``tokenizer.apply_chat_template``; the template a
:class:`ChatFormat` spells out when the tokenizer has none) tokenised in one piece, as the real checkpoint saw
it in training — never segment by segment, which can differ at the joins (a SentencePiece ``▁``, a merged
newline). The video enters the first user message as the family's collapsed visual marker (its placeholder
token once, e.g. ``<|vision_start|><|video_pad|><|vision_end|>``); after tokenisation the marker's tokens are
replaced by the family's full visual block and the K anomaly-prompt slots are spliced in right after it.

:class:`DialogueMixin` is one of the bases of :class:`~tvau_lightning.backbones.base.BackboneAdapter`; it uses
the adapter's text contract (``tokenize``, ``get_input_embeddings``, ``max_context_length``, ``tokenizer``,
``model``, ``_placeholder_id``, ``_require_language_model``). A family supplies :attr:`~DialogueMixin.chat_format`
and :meth:`~DialogueMixin.visual_placeholder`, and overrides the ``language_model_kwargs`` /
``prepare_language_model`` hooks where its language model needs more than ``inputs_embeds``.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from tvau_lightning.backbones.types import ContextOverflowError, VideoInputs
from tvau_lightning.data.dialogue_schema import Turn

#: label of positions that carry no loss (the default ``ignore_index`` of ``F.cross_entropy``)
IGNORE_INDEX = -100


@dataclass
class DialogueInputs:
    """Token-level inputs of a batch of dialogues, before embeddings are filled in.

    Attributes:
        input_ids: ``(B, L)``; visual and prompt positions hold placeholder ids.
        attention_mask: ``(B, L)`` 1 on real tokens, 0 on padding.
        labels: ``(B, L)`` token ids on assistant answers (and their end-of-turn token), ``-100`` elsewhere.
        visual_mask: ``(B, L)`` bool, positions that receive visual tokens.
        prompt_mask: ``(B, L)`` bool, positions that receive anomaly-prompt embeddings.
        token_type_ids: ``(B, L)`` 0 text, 1 image, 2 video (Qwen2.5-VL's ``mm_token_type_ids``).
        padding_side: ``right`` (training) or ``left`` (generation).
        video: the :class:`VideoInputs` the visual placeholders were laid out for (or ``None``).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    visual_mask: torch.Tensor
    prompt_mask: torch.Tensor
    token_type_ids: torch.Tensor
    padding_side: str
    video: VideoInputs | None = None

    def to(self, device: torch.device | str) -> DialogueInputs:
        return DialogueInputs(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            labels=self.labels.to(device),
            visual_mask=self.visual_mask.to(device),
            prompt_mask=self.prompt_mask.to(device),
            token_type_ids=self.token_type_ids.to(device),
            padding_side=self.padding_side,
            video=self.video.to(device) if self.video is not None else None,
        )


@dataclass(frozen=True)
class ChatFormat:
    """The family's chat markup, as literal strings around each message (special tokens included).

    ``answer_separator`` goes between the assistant header and an answer but not at the end of a generation
    prompt (Vicuna's ``ASSISTANT: Yes`` vs the prompt ``ASSISTANT:``). :meth:`jinja` writes it as a chat
    template; the adapter uses it only when the tokenizer brings no template of its own.
    """

    system: str | None
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str
    answer_separator: str = ""

    def jinja(self) -> str:
        """This markup as a Jinja chat template over string contents (``add_generation_prompt`` supported)."""
        def lit(text: str | None) -> str:
            return "{{ " + repr(text or "") + " }}"

        return (
            lit(self.system)
            + "{% for message in messages %}{% if message['role'] == 'user' %}"
            + lit(self.user_prefix) + "{{ message['content'] }}" + lit(self.user_suffix)
            + "{% elif message['role'] == 'assistant' %}"
            + lit(self.assistant_prefix) + lit(self.answer_separator) + "{{ message['content'] }}"
            + lit(self.assistant_suffix)
            + "{% endif %}{% endfor %}{% if add_generation_prompt %}" + lit(self.assistant_prefix) + "{% endif %}"
        )

    @classmethod
    def chatml(cls, system_message: str | None) -> ChatFormat:
        """ChatML markup (``<|im_start|>{role}\n{content}<|im_end|>\n``) of Qwen2.5 and its derivatives, with a
        system turn holding ``system_message`` (none when ``None``)."""
        return cls(
            system=None if system_message is None else f"<|im_start|>system\n{system_message}<|im_end|>\n",
            user_prefix="<|im_start|>user\n",
            user_suffix="<|im_end|>\n",
            assistant_prefix="<|im_start|>assistant\n",
            assistant_suffix="<|im_end|>\n",
        )


@dataclass
class _Segment:
    """A run of token ids of one kind in a dialogue's layout (``token_type`` as in :class:`DialogueInputs`)."""

    ids: list[int]
    kind: Literal["text", "visual", "prompt"] = "text"
    trainable: bool = False
    token_type: int = 0


class DialogueMixin(ABC):
    """Dialogue inputs, embeddings, forward with labels and generation of a :class:`BackboneAdapter`."""

    @property
    @abstractmethod
    def chat_format(self) -> ChatFormat:
        """The family's chat markup."""

    @abstractmethod
    def visual_placeholder(self, video: VideoInputs) -> list[_Segment]:
        """The segments that stand for one clip's visual tokens (markers as text, tokens as ``visual``)."""

    def num_visual_tokens(self, video: VideoInputs) -> int:
        return sum(len(s.ids) for s in self.visual_placeholder(video) if s.kind == "visual")

    def chat_template(self) -> str:
        """The Jinja chat template dialogues are rendered with: the tokenizer's own, else
        :meth:`ChatFormat.jinja` of :attr:`chat_format`."""
        template = getattr(self.tokenizer, "chat_template", None)
        if isinstance(template, dict):
            template = template.get("default")
        return template or self.chat_format.jinja()

    def visual_marker(self, video: VideoInputs) -> list[int]:
        """The family's visual block with each run of visual tokens collapsed to one placeholder: the ids the
        chat template renders for one video before the processor expands it."""
        ids: list[int] = []
        for seg in self.visual_placeholder(video):
            ids += seg.ids[:1] if seg.kind == "visual" else seg.ids
        return ids

    def render_dialogue(self, turns: Sequence[Turn], *, marker: str = "", add_generation_prompt: bool = False
                        ) -> tuple[str, list[tuple[int, int, str]]]:
        """The chat-template text of one dialogue (``marker`` opening the first user message) and the
        character span ``(start, end, role)`` of every message's content (the marker excluded)."""
        messages = [{"role": t.role, "content": (marker if i == 0 else "") + t.content} for i, t in enumerate(turns)]
        try:
            text = self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template(), tokenize=False,
                                                      add_generation_prompt=add_generation_prompt)
        except Exception as error:  # a processor-style template that wants typed content: use the chat format
            warnings.warn(f"the tokenizer's chat template cannot render plain-text messages ({error}); using the "
                          f"{type(self).__name__} chat format", RuntimeWarning, stacklevel=2)
            text = self.tokenizer.apply_chat_template(messages, chat_template=self.chat_format.jinja(),
                                                      tokenize=False, add_generation_prompt=add_generation_prompt)
        spans, cursor = [], 0
        for message, turn in zip(messages, turns):
            start = text.find(message["content"], cursor)
            if start < 0:
                raise ValueError(f"the chat template of {type(self).__name__} rewrites message text "
                                 f"({message['content'][:40]!r} not found in its output); its turns cannot be located")
            cursor = start + len(message["content"])
            spans.append((start + len(message["content"]) - len(turn.content), cursor, turn.role))
        return text, spans

    def _dialogue_segments(self, turns: Sequence[Turn], visual: list[_Segment], marker_ids: list[int],
                           num_prompt_tokens: int, add_generation_prompt: bool) -> list[_Segment]:
        """One dialogue as segments: the chat-template text tokenised in one piece, the marker's tokens
        replaced by ``visual``, the prompt slots after it, assistant answers (+ their end-of-turn token)
        trainable."""
        marker = self.tokenizer.decode(marker_ids, skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False) if marker_ids else ""
        text, spans = self.render_dialogue(turns, marker=marker, add_generation_prompt=add_generation_prompt)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        splice = spans[0][0]  # where the first user content (after the marker) starts
        marker_start = splice - len(marker)
        eos = set(self.generation_eos_token_ids())
        trainable = [False] * len(ids)
        for m, (start, end, role) in enumerate(spans):
            if role != "assistant":
                continue
            stop = spans[m + 1][0] if m + 1 < len(spans) else len(text)
            closing = False
            for i, (a, b) in enumerate(offsets):
                if b > start and a < end and b > a:
                    trainable[i] = True
                elif end <= a < stop and not closing and ids[i] in eos:
                    trainable[i] = closing = True  # the answer's end-of-turn token: the model learns to stop
        segs: list[_Segment] = []
        placed = False
        for i, (tid, (a, b)) in enumerate(zip(ids, offsets)):
            if not placed:
                if marker and (a < marker_start < b or a < splice < b):
                    raise ValueError(f"{type(self).__name__}: a token of the chat template straddles the visual "
                                     f"marker ({text[a:b]!r}); the video cannot be spliced in exactly")
                if marker and marker_start <= a and b <= splice:
                    continue  # a marker token: the visual block replaces it
                if b > splice:
                    segs.extend(_Segment(list(v.ids), v.kind, False, v.token_type) for v in visual)
                    if num_prompt_tokens:
                        segs.append(_Segment([self._placeholder_id] * num_prompt_tokens, "prompt"))
                    placed = True
            segs.append(_Segment([tid], trainable=trainable[i]))
        if not placed:
            raise ValueError(f"{type(self).__name__}: the first user message was not found in the tokenised dialogue")
        return segs

    def build_dialogue_inputs(
        self,
        dialogues: Sequence[Sequence[Turn]],
        *,
        video: VideoInputs | None = None,
        num_prompt_tokens: int = 0,
        add_generation_prompt: bool = False,
        padding_side: str = "right",
        max_length: int | None = None,
    ) -> DialogueInputs:
        """Lay out a batch of dialogues in the backbone's chat template, with the visual tokens and
        ``num_prompt_tokens`` anomaly-prompt slots opening the first user message.

        Labels cover assistant answers and their end-of-turn token only. With ``add_generation_prompt``
        each dialogue must end with a user turn and the assistant header is appended (for ``generate``).
        Apart from the visual block and the prompt slots, the ids are exactly
        ``tokenizer.apply_chat_template`` of the dialogue with the collapsed visual marker.

        Raises:
            ContextOverflowError: a dialogue longer than ``max_length`` or the model's context.
        """
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if video is not None and video.batch_size != len(dialogues):
            raise ValueError(f"{len(dialogues)} dialogues but the video batch has {video.batch_size} clips")
        visual = self.visual_placeholder(video) if video is not None else []
        marker_ids = self.visual_marker(video) if video is not None else []
        rows: list[list[_Segment]] = []
        for turns in dialogues:
            if not turns or turns[0].role != "user":
                raise ValueError("a dialogue must start with a user turn")
            if add_generation_prompt and turns[-1].role != "user":
                raise ValueError("add_generation_prompt=True needs dialogues that end with a user turn")
            rows.append(self._dialogue_segments(turns, visual, marker_ids, num_prompt_tokens, add_generation_prompt))

        limit = min(max_length or self.max_context_length, self.max_context_length)
        lengths = [sum(len(s.ids) for s in segs) for segs in rows]
        longest = max(lengths)
        if longest > limit:
            n_vis = self.num_visual_tokens(video) if video is not None else 0
            raise ContextOverflowError(
                f"a dialogue needs {longest} tokens ({n_vis} visual, {num_prompt_tokens} anomaly-prompt, "
                f"{longest - n_vis - num_prompt_tokens} text) but the limit is {limit} "
                f"(model context {self.max_context_length}). Use fewer frames (max_frames / clip_len), a "
                "smaller frame size, visual_token_pool > 1, or shorter dialogues."
            )

        pad = self._placeholder_id
        shape = (len(rows), longest)
        input_ids = torch.full(shape, pad, dtype=torch.long)
        attention = torch.zeros(shape, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        visual_mask = torch.zeros(shape, dtype=torch.bool)
        prompt_mask = torch.zeros(shape, dtype=torch.bool)
        token_types = torch.zeros(shape, dtype=torch.long)
        for b, segs in enumerate(rows):
            pos = 0 if padding_side == "right" else longest - lengths[b]
            for s in segs:
                n = len(s.ids)
                sl = slice(pos, pos + n)
                input_ids[b, sl] = torch.tensor(s.ids, dtype=torch.long)
                attention[b, sl] = 1
                if s.trainable:
                    labels[b, sl] = input_ids[b, sl]
                visual_mask[b, sl] = s.kind == "visual"
                prompt_mask[b, sl] = s.kind == "prompt"
                token_types[b, sl] = s.token_type
                pos += n
        return DialogueInputs(
            input_ids=input_ids,
            attention_mask=attention,
            labels=labels,
            visual_mask=visual_mask,
            prompt_mask=prompt_mask,
            token_type_ids=token_types,
            padding_side=padding_side,
            video=video,
        )

    def embed_dialogue(
        self,
        inputs: DialogueInputs,
        visual_tokens: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``inputs_embeds (B, L, D)``: token embeddings with visual tokens ``(B, N, D)`` and prompt
        embeddings ``(B, K, D)`` scattered into their placeholder positions (differentiable in both)."""
        embeds = self.get_input_embeddings()(inputs.input_ids)
        for name, mask, source in (
            ("visual_tokens", inputs.visual_mask, visual_tokens),
            ("prompt_embeds", inputs.prompt_mask, prompt_embeds),
        ):
            n_slots = int(mask.sum())
            if n_slots == 0:
                continue
            if source is None:
                raise ValueError(f"the dialogue has {n_slots} {name} slots but no {name} were given")
            if source.numel() // source.shape[-1] != n_slots:
                raise ValueError(
                    f"{name} has {source.numel() // source.shape[-1]} vectors for {n_slots} slots "
                    f"(shape {tuple(source.shape)})"
                )
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), source.to(embeds.dtype).reshape(-1, embeds.shape[-1]))
        return embeds

    def language_model_kwargs(self, inputs: DialogueInputs) -> dict[str, Any]:
        """Extra keyword arguments the family's language-model forward needs besides ``inputs_embeds``
        and ``attention_mask`` (Qwen2.5-VL: ``input_ids`` and mm-token types for 3-D positions)."""
        return {}

    def prepare_language_model(self) -> None:  # noqa: B027 - an optional hook, empty for most families
        """Reset per-call state before a language-model forward (Qwen2.5-VL's cached rope deltas)."""

    def forward_dialogue(
        self, inputs: DialogueInputs, inputs_embeds: torch.Tensor, *, compute_loss: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Language-model forward. Returns ``(loss, logits)``; the loss is the mean token cross-entropy
        over labelled (assistant) positions, ``None`` when there are none or ``compute_loss`` is off."""
        self._require_language_model("forward_dialogue")
        self.prepare_language_model()
        out = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=inputs.attention_mask,
            use_cache=False,
            **self.language_model_kwargs(inputs),
        )
        logits = out.logits
        loss = None
        if compute_loss and bool((inputs.labels != IGNORE_INDEX).any()):
            shift_logits = logits[:, :-1].float()
            shift_labels = inputs.labels[:, 1:]
            loss = F.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return loss, logits

    @torch.no_grad()
    def generate(
        self, inputs: DialogueInputs, inputs_embeds: torch.Tensor, *, max_new_tokens: int = 64, **kwargs: Any
    ) -> list[str]:
        """Greedy (by default) generation of the next assistant message for each dialogue.

        ``inputs`` must be laid out with ``padding_side="left"`` and ``add_generation_prompt=True``.
        """
        self._require_language_model("generate")
        if inputs.padding_side != "left":
            raise ValueError("generate needs dialogue inputs built with padding_side='left'")
        self.prepare_language_model()
        gen_kwargs: dict[str, Any] = {"do_sample": False, "max_new_tokens": max_new_tokens}
        eos = self.generation_eos_token_ids()
        if eos:
            gen_kwargs["eos_token_id"] = eos
        gen_kwargs["pad_token_id"] = self._placeholder_id
        gen_kwargs.update(kwargs)
        out = self.model.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=inputs.attention_mask,
            **self.generation_kwargs(inputs),
            **gen_kwargs,
        )
        new_tokens = self.new_generated_tokens(out, inputs)
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in new_tokens]

    def generation_kwargs(self, inputs: DialogueInputs) -> dict[str, Any]:
        """Extra ``generate`` keyword arguments (defaults to :meth:`language_model_kwargs`)."""
        return self.language_model_kwargs(inputs)

    def new_generated_tokens(self, output: torch.Tensor, inputs: DialogueInputs) -> list[torch.Tensor]:
        """The newly generated ids per sample, cut at the first end-of-turn token.

        With ``inputs_embeds`` only, ``generate`` returns the new tokens alone; when the family also passes
        ``input_ids`` the prompt is echoed first and is cut here.
        """
        if "input_ids" in self.generation_kwargs(inputs):
            output = output[:, inputs.input_ids.shape[1]:]
        eos = set(self.generation_eos_token_ids())
        rows = []
        for row in output:
            ids = row.tolist()
            for i, t in enumerate(ids):
                if t in eos:
                    ids = ids[:i]
                    break
            rows.append(torch.tensor(ids, dtype=torch.long))
        return rows

    def generation_eos_token_ids(self) -> list[int]:
        """Token ids that end an assistant message (from the chat format's assistant suffix + eos)."""
        ids = [i for i in self.tokenize(self.chat_format.assistant_suffix.strip()) if i in self._special_ids()]
        if self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        return sorted(set(ids))

    def _special_ids(self) -> set[int]:
        return set(getattr(self.tokenizer, "all_special_ids", []))
