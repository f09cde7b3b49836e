"""``tvau chat``: a multi-turn anomaly dialogue about one video with a stage-2 (RAE) model, in the terminal or
scripted through stdin (the dialogue state is :class:`~tvau_lightning.inference.session.ChatSession`; ``--range
START END`` discusses part of the video).

Lines starting with ``/`` are commands:

``/reset``            forget the history (the video stays)
``/heatmap [PATH]``   save the AHD overlay of the discussed frames: ``.mp4`` (default
                      ``{out}/{video}_overlay.mp4``) or ``.png`` (a tile of the frames the model sees)
``/standard``         reset, then ask the four standard questions (:data:`STANDARD_QUESTIONS`)
``/history``          print the dialogue so far
``/help``, ``/quit``  (end of input, Ctrl-D, also quits)

The model sees the video sampled as its checkpoint's dialogue DataModule sampled training clips (rate or
stride, min/max frames, frame size; ``--sample-fps`` … override it with a warning); the banner says which.
An answer's time references (frames of the model's own sampled-frame index, or seconds from the first frame it
saw) are followed by the source frame and time they name: ``at frame 3 [source frame 90, 3.0 s]``.
Answers go to stdout (one line each; with ``--jsonl`` one JSON object per question or command), everything
else (banner, prompts, warnings, errors) to stderr, so ``printf 'Is there any anomaly?\\n/heatmap\\n' | tvau chat …`` is
scriptable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tvau_lightning.commands.errors import command_error
from tvau_lightning.commands.options import (
    add_dialogue_sampling_options,
    add_model_options,
    dialogue_overrides,
    nonnegative_int,
    positive_int,
)
from tvau_lightning.data.video import VideoReader, VideoReadError, open_video
from tvau_lightning.inference.citations import annotate_citations, citations_span
from tvau_lightning.inference.session import ChatSession, FrameRange

HELP = """commands: /reset (forget the history), /heatmap [PATH.mp4|PATH.png] (save the heatmap overlay),
/standard (reset and ask the four standard questions), /history, /help, /quit (or end of input)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False,
        prog="tvau chat",
        description="Chat about a video with a stage-2 (RAE) model. Type questions; commands start with '/' "
                    "(/help). Reads stdin, so it can be scripted: printf 'question\\n/heatmap\\n' | tvau chat ...",
    )
    parser.add_argument("video", help="a video file or a folder of numbered frame images")
    parser.add_argument("--rae-ckpt", required=True, help="stage-2 RAE checkpoint (.ckpt)")
    parser.add_argument("--ckpt", help="stage-1 AHD checkpoint (default: the one the RAE checkpoint names)")
    parser.add_argument("--range", type=nonnegative_int, nargs=2, metavar=("START", "END"),
                        help="discuss only frames START..END (inclusive, 0-based); default the whole video")
    parser.add_argument("--max-new-tokens", type=positive_int, help="longest answer in tokens (default: the checkpoint's)")
    parser.add_argument("--out", default=".", help="folder for /heatmap files without a path (default: here)")
    parser.add_argument("--transcript", help="write the dialogue to this JSON file at the end")
    parser.add_argument("--jsonl", action="store_true", help="print one JSON object per question or command")
    add_model_options(parser)
    add_dialogue_sampling_options(parser)
    return parser


class ChatApp:
    """The read–answer loop of ``tvau chat`` (separate from argument parsing so tests can drive it)."""

    def __init__(self, session: ChatSession, source: VideoReader, models: Any, *,
                 out_dir: Path, jsonl: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.session, self.source, self.models = session, source, models
        self.out_dir, self.jsonl = out_dir, jsonl
        self.stdout, self.stderr = stdout or sys.stdout, stderr or sys.stderr
        self._analysis: Any = None

    def _emit(self, record: dict[str, Any], text: str) -> None:
        print(json.dumps(record, ensure_ascii=False) if self.jsonl else text, file=self.stdout, flush=True)

    def _emit_answer(self, record: dict[str, Any]) -> None:
        """An answer with its time references resolved to source frames: after each one in the text (``at frame 3
        [source frame 90, 3.0 s]``), as ``citations``/``source_frames`` in JSON."""
        clip = self.session.clip
        citations = clip.citations(record["answer"])
        fps = clip.source_fps or clip.fps
        if citations:
            record = {**record, "source_frames": citations_span(citations),
                      "citations": [c.to_json(fps) for c in citations]}
        self._emit(record, annotate_citations(record["answer"], citations, fps, len(clip.frame_index)))

    def analysis(self) -> Any:
        """The AHD analysis of the discussed frames (computed on first use)."""
        if self._analysis is None:
            from tvau_lightning.inference.analyze import analyze_video

            self._analysis = analyze_video(self.models.heatmaps, self.source, frame_size=self.models.frame_size,
                                           clip_len=self.models.clip_len)
        return self._analysis

    def save_heatmap(self, target: str | None) -> Path:
        """``/heatmap``: the overlay video (``.mp4``) or a tile image of the model's frames (``.png``)."""
        from tvau_lightning.atomic import atomic_path
        from tvau_lightning.inference.analyze import write_overlay_video
        from tvau_lightning.visualize import overlay_heatmap, tile_frames

        path = Path(target) if target else self.out_dir / f"{Path(self.source.path).stem}_overlay.mp4"
        if path.suffix.lower() not in (".mp4", ".png"):
            raise ValueError(f"/heatmap saves .mp4 (overlay video) or .png (frame tile), got {path.name!r}")
        analysis = self.analysis()
        with atomic_path(path) as tmp:
            if path.suffix.lower() == ".mp4":
                write_overlay_video(analysis, self.source, tmp)
            else:
                from PIL import Image

                offset = self.source.start if isinstance(self.source, FrameRange) else 0
                local = self.session.clip.frame_index - offset
                frames = overlay_heatmap(self.source.read(local), analysis.frame_heatmaps(local))
                Image.fromarray(tile_frames(frames, ncols=4).numpy()).save(tmp, format="PNG")
        return path

    def handle(self, line: str) -> bool:
        """Process one input line; returns False when the session should end."""
        from tvau_lightning.backbones.types import ContextOverflowError

        line = line.strip()
        if not line:
            return True
        if not line.startswith("/"):
            try:
                answer = self.session.ask(line)
            except ContextOverflowError as error:
                print(f"error: {error} — /reset to start a new dialogue", file=self.stderr)
                return True
            self._emit_answer({"question": line, "answer": answer})
            return True
        command, _, argument = line.partition(" ")
        argument = argument.strip()
        if command in ("/quit", "/exit"):
            return False
        if command == "/help":
            print(HELP, file=self.stderr)
        elif command == "/reset":
            self.session.reset()
            self._emit({"command": "/reset"}, "(history cleared)")
        elif command == "/history":
            for turn in self.session.history:
                self._emit({"command": "/history", **turn.to_json()}, f"{turn.role}: {turn.content}")
        elif command == "/standard":
            for entry in self.session.standard_answers()["answers"]:
                self._emit_answer({"question": entry["question"], "answer": entry["answer"], "kind": entry["kind"]})
        elif command == "/heatmap":
            try:
                path = self.save_heatmap(argument or None)
            except (ValueError, OSError) as error:
                print(f"error: {error}", file=self.stderr)
                return True
            self._emit({"command": "/heatmap", "path": str(path)}, f"saved {path}")
        else:
            print(f"unknown command {command!r}; {HELP}", file=self.stderr)
        return True

    def run(self, stdin: TextIO | None = None) -> None:
        """Read lines until ``/quit`` or the end of input (Ctrl-D); Ctrl-C also ends the session."""
        stdin = stdin or sys.stdin
        interactive = stdin.isatty()
        if interactive:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401 - line editing and history for input()
        try:
            while True:
                if interactive:
                    try:
                        line = input("you> ")
                    except EOFError:
                        print(file=self.stderr)
                        break
                else:
                    line = stdin.readline()
                    if not line:
                        break
                if not self.handle(line):
                    break
        except KeyboardInterrupt:
            print(file=self.stderr)


def chat_main(argv: Sequence[str]) -> int:
    """Entry point of ``tvau chat``."""
    from tvau_lightning.atomic import write_text_atomic
    from tvau_lightning.backbones.types import BackboneError
    from tvau_lightning.checkpoints import CheckpointError
    from tvau_lightning.inference.models import load_models

    args = build_parser().parse_args(list(argv))
    try:
        source = open_video(args.video, args.video_backend, fps=args.fps)
        if source.num_frames < 1:
            raise VideoReadError(f"{args.video} has no frames")
        _ = source.size  # decode frame 0: fail now on a broken file
        view: VideoReader = source
        if args.range:
            view = FrameRange(source, *args.range)
        models = load_models(ckpt=args.ckpt, rae_ckpt=args.rae_ckpt, backbone=args.backbone,
                             frame_size=args.frame_size, clip_len=args.clip_len, device=args.device, dtype=args.dtype,
                             force_backbone=args.force_backbone, dialogue_overrides=dialogue_overrides(args))
        if args.max_new_tokens:
            models.rae.hparams.max_new_tokens = int(args.max_new_tokens)
        session = ChatSession.from_video(models.rae, view, sampling=models.rae_sampling, fps=args.fps)
    except (VideoReadError, FileNotFoundError, CheckpointError, BackboneError, ValueError) as error:
        return command_error("chat", error)
    for warning in models.warnings:
        print(f"tvau chat: warning: {warning}", file=sys.stderr)
    frames = session.clip.frame_index
    origin = {"checkpoint": "the checkpoint's", "flags": "overridden", "default": "default"}[models.rae_sampling.origin]
    print(f"chatting about {args.video}: the model sees {len(frames)} frames ({frames[0]}–{frames[-1]}) at "
          f"{session.clip.fps:g} fps; sampling ({origin}): {models.rae_sampling.describe()}", file=sys.stderr)
    if session.clip.note:
        print(f"tvau chat: note: {session.clip.note}; --range START END discusses another part", file=sys.stderr)
    print(HELP, file=sys.stderr)
    app = ChatApp(session, view, models, out_dir=Path(args.out), jsonl=args.jsonl)
    app.run()
    if args.transcript:
        document = {"video": str(args.video), "frames_used": frames.tolist(), "fps": session.clip.fps,
                    "sampling": {**(session.clip.sampling or {}), "note": session.clip.note},
                    "turns": session.transcript()}
        write_text_atomic(os.fspath(args.transcript), json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return 0
