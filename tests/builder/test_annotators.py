"""Retries and recorded failures of structured questions; scripted, ground-truth and local-backbone annotators."""

import json

import numpy as np
import pytest

from tvau_lightning.builder.annotators import (
    AnnotatorConfigError,
    AnnotatorRequest,
    AnnotatorRequestError,
    AnnotatorTransientError,
    BackboneAnnotator,
    GroundTruthResponder,
    RetryPolicy,
    ScriptedAnnotator,
    colour_name,
    query_structured,
)
from tvau_lightning.builder.schema import parse_frame_objects, parse_motion

GOOD = json.dumps({"objects": [{"category": "person", "attributes": ["red coat"], "box": [1, 2, 10, 20]}]})


def request(task="frame_objects", images=None, **meta):
    return AnnotatorRequest(task, "prompt", images if images is not None else [np.zeros((30, 40, 3), np.uint8)],
                            meta=meta)


def parse(text):
    return parse_frame_objects(text, 40, 30)


def test_malformed_then_good_is_retried_with_backoff():
    waits = []
    annotator = ScriptedAnnotator(["no json here", '{"objects": [{"category": 1}]}', GOOD])
    outcome = query_structured(annotator, request(), parse, RetryPolicy(attempts=3, backoff=0.5), sleep=waits.append)
    assert outcome.ok and outcome.attempts == 3
    assert outcome.value[0].box == (1, 2, 10, 20)
    assert waits == [0.5, 1.0]  # doubled each time
    assert annotator.calls == 3


def test_failures_are_recorded_not_raised():
    waits = []
    malformed = query_structured(ScriptedAnnotator(["nope"] * 3), request(), parse, RetryPolicy(3, 0.0),
                                 sleep=waits.append)
    assert not malformed.ok and malformed.value is None
    assert (malformed.attempts, malformed.error_kind, malformed.raw) == (3, "malformed", "nope")
    assert "holds no JSON" in malformed.error
    transient = query_structured(ScriptedAnnotator([AnnotatorTransientError("timed out")] * 2), request(), parse,
                                 RetryPolicy(2, 0.0), sleep=waits.append)
    assert (transient.ok, transient.attempts, transient.error_kind, transient.error) == (False, 2, "transient", "timed out")
    # a request error is not retried
    annotator = ScriptedAnnotator([AnnotatorRequestError("too long"), GOOD])
    once = query_structured(annotator, request(), parse, RetryPolicy(3, 0.0), sleep=waits.append)
    assert (once.ok, once.attempts, once.error_kind, annotator.calls) == (False, 1, "request", 1)
    # a configuration error stops everything
    with pytest.raises(AnnotatorConfigError):
        query_structured(ScriptedAnnotator([AnnotatorConfigError("bad key")]), request(), parse, sleep=waits.append)
    with pytest.raises(KeyboardInterrupt):
        query_structured(ScriptedAnnotator([KeyboardInterrupt()]), request(), parse, sleep=waits.append)


def test_retry_policy_waits():
    policy = RetryPolicy(attempts=5, backoff=1.0, max_backoff=5.0)
    assert [policy.wait(a) for a in range(1, 5)] == [1.0, 2.0, 4.0, 5.0]
    assert policy.wait(1, retry_after=3.0) == 3.0
    assert policy.wait(1, retry_after=60.0) == 5.0
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_scripted_annotator_runs_out_and_callable():
    annotator = ScriptedAnnotator([GOOD])
    assert annotator.complete(request()) == GOOD
    with pytest.raises(AnnotatorRequestError, match="ran out"):
        annotator.complete(request())
    echo = ScriptedAnnotator(lambda r: r.meta["reply"])
    assert echo.complete(request(reply="hi")) == "hi" and echo.calls == 1
    assert echo.log == [("frame_objects", {"reply": "hi"})]


def test_colour_names():
    assert colour_name((250, 30, 20)) == "red"
    assert colour_name((250, 140, 0)) == "orange"
    assert colour_name((60, 90, 170)) == "blue"
    assert colour_name((128, 128, 132)) == "grey"
    assert colour_name((245, 245, 240)) == "white"


def test_ground_truth_responder():
    image = np.full((60, 80, 3), 120, np.uint8)
    image[10:30, 20:40] = (255, 30, 20)  # a red object
    responder = GroundTruthResponder(category="person", abnormal_category="intruder")
    # the image sent is half the frame's size: boxes are scaled to it
    reply = responder(AnnotatorRequest("frame_objects", "p", [image], meta={
        "frame_size": [120, 160], "reference_boxes": [{"box": [40, 20, 80, 60], "abnormal": True},
                                                      {"box": [0, 80, 20, 120], "abnormal": False}]}))
    objects = parse_frame_objects(reply, 80, 60, scale_to=(120, 160))
    assert [o.category for o in objects] == ["intruder", "person"]
    assert objects[0].attributes == ["red clothing"] and objects[1].attributes == ["grey clothing"]
    assert objects[0].box == pytest.approx((40, 20, 80, 60))
    motion = responder(AnnotatorRequest("verify_motion", "p", [image], meta={
        "frame_size": [120, 160], "boxes": [[0, 0, 10, 10], [50, 60, 60, 70]]}))
    assert parse_motion(motion).direction == "down-right"
    still = responder(AnnotatorRequest("verify_motion", "p", [image], meta={"boxes": [[0, 0, 10, 10]]}))
    assert parse_motion(still).direction == "stationary"
    with pytest.raises(AnnotatorRequestError):
        responder(AnnotatorRequest("chat", "p", [image]))


@pytest.fixture(scope="module")
def tiny_qwen():
    from tvau_lightning.backbones.tiny import build_tiny_backbone

    return build_tiny_backbone("qwen2_5_vl")


def test_backbone_annotator_garbage_is_a_recorded_failure(tiny_qwen):
    annotator = BackboneAnnotator(tiny_qwen, image_size=(32, 32), max_new_tokens=12)
    assert annotator.sent_size(np.zeros((48, 64, 3), np.uint8)) == (32, 32)
    text = annotator.complete(request(images=[np.zeros((48, 64, 3), np.uint8), np.full((48, 64, 3), 200, np.uint8)]))
    assert isinstance(text, str)
    outcome = query_structured(annotator, request(), parse, RetryPolicy(2, 0.0), sleep=lambda s: None)
    # a random model writes no valid JSON: two tries, then a failure with the raw text kept
    assert not outcome.ok and outcome.attempts == 2 and outcome.error_kind == "malformed"
    assert outcome.raw is not None
    assert annotator.describe()["family"] == "qwen2_5_vl"
    with pytest.raises(AnnotatorRequestError, match="at least one image"):
        annotator.complete(request(images=[]))
