"""The fine-grained video–text dataset builder (paper §3.3, SPEC §5): ``tvau build-dataset``.

Videos (:mod:`.sources`) → an annotator LVLM answers structured questions (:mod:`.annotators`,
:mod:`.openai_http`, :mod:`.schema`) → per-target timelines (:mod:`.timelines`), anomaly-focused refinement
(:mod:`.focus`), mutual verification (:mod:`.verify`) → dialogues with exact yes/no, trajectory and anchor
answers from geometry (:mod:`.geometry`, :mod:`.render`), written resumably by :mod:`.pipeline`.
See ``docs/builder.md``. Names load on first access, so importing the package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DatasetBuilder": "tvau_lightning.builder.pipeline",
    "BuilderSettings": "tvau_lightning.builder.pipeline",
    "BuildSummary": "tvau_lightning.builder.pipeline",
    "BuildError": "tvau_lightning.builder.pipeline",
    "NoRecordsError": "tvau_lightning.builder.pipeline",
    "PAPER_RECORDS": "tvau_lightning.builder.pipeline",
    "DENSE_RECORDS": "tvau_lightning.builder.pipeline",
    "Annotator": "tvau_lightning.builder.annotators",
    "AnnotatorRequest": "tvau_lightning.builder.annotators",
    "BackboneAnnotator": "tvau_lightning.builder.annotators",
    "ScriptedAnnotator": "tvau_lightning.builder.annotators",
    "GroundTruthResponder": "tvau_lightning.builder.annotators",
    "RetryPolicy": "tvau_lightning.builder.annotators",
    "query_structured": "tvau_lightning.builder.annotators",
    "OpenAIChatAnnotator": "tvau_lightning.builder.openai_http",
    "DatasetVideoSource": "tvau_lightning.builder.sources",
    "ArrayVideoSource": "tvau_lightning.builder.sources",
    "ubnormal_videos": "tvau_lightning.builder.sources",
    "shanghaitech_videos": "tvau_lightning.builder.sources",
    "folder_videos": "tvau_lightning.builder.sources",
    "GeometrySettings": "tvau_lightning.builder.geometry",
    "trajectory_facts": "tvau_lightning.builder.geometry",
    "describe_trajectory": "tvau_lightning.builder.geometry",
    "describe_anchors": "tvau_lightning.builder.geometry",
    "QUESTIONS": "tvau_lightning.builder.render",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
