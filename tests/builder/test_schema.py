"""Structured replies: good ones parse (whatever the wrapping), malformed ones raise with the field named."""

import json

import pytest

from tvau_lightning.builder.schema import (
    FRAME_OBJECTS_SCHEMA,
    MAX_OBJECTS,
    ReplyFormatError,
    categories_agree,
    category_group,
    extract_json,
    frame_objects_prompt,
    motion_prompt,
    normalize_direction,
    parse_appearance,
    parse_frame_objects,
    parse_motion,
)

GOOD = {"objects": [{"category": "Person", "attributes": ["Red coat", "red coat", "running"], "box": [10, 20, 60, 90]},
                    {"category": "car", "attributes": [], "box": [100.5, 10, 150, 40], "id": 7}]}


@pytest.mark.parametrize(
    "wrap",
    [lambda s: s, lambda s: f"```json\n{s}\n```", lambda s: f"Here is the JSON:\n{s}\nDone.", lambda s: f"```\n{s}```"],
)
def test_good_reply_any_wrapping(wrap):
    objects = parse_frame_objects(wrap(json.dumps(GOOD)), width=160, height=100)
    assert [o.category for o in objects] == ["person", "car"]
    assert objects[0].attributes == ["red coat", "running"]  # lower-cased, duplicates removed
    assert objects[0].box == (10, 20, 60, 90)
    assert objects[1].object_id == 7 and objects[0].object_id is None


def test_boxes_scaled_to_the_video_and_normalised_formats():
    # the annotator saw a 160x100 image made from a 320x200 frame: boxes double
    (obj,) = parse_frame_objects(json.dumps({"objects": [GOOD["objects"][0]]}), 160, 100, scale_to=(200, 320))
    assert obj.box == (20, 40, 120, 180)
    reply = json.dumps({"objects": [{"category": "person", "attributes": [], "box": [250, 500, 500, 1000]}]})
    (obj,) = parse_frame_objects(reply, 160, 100, "normalized_1000")
    assert obj.box == pytest.approx((40, 50, 80, 100))
    reply = json.dumps({"objects": [{"category": "person", "attributes": [], "box": [0.25, 0.5, 0.5, 1.0]}]})
    (obj,) = parse_frame_objects(reply, 160, 100, "normalized_1")
    assert obj.box == pytest.approx((40, 50, 80, 100))
    # a small overshoot (< 2 % of the side) is clipped to the image
    reply = json.dumps({"objects": [{"category": "person", "attributes": [], "box": [-2, 0, 162, 101]}]})
    (obj,) = parse_frame_objects(reply, 160, 100)
    assert obj.box == (0, 0, 160, 100)
    # a bare list and an empty list are fine
    assert parse_frame_objects("[]", 160, 100) == []
    assert parse_frame_objects('{"objects": []}', 160, 100) == []


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        ("I see a person in a red coat.", "holds no JSON"),
        ('{"things": []}', "no 'objects' field"),
        ('{"objects": {"category": "person"}}', "'objects' must be a list"),
        ('{"objects": [{"attributes": [], "box": [0, 0, 5, 5]}]}', "objects[0] has no 'category'"),
        ('{"objects": [{"category": "", "attributes": [], "box": [0, 0, 5, 5]}]}', "objects[0].category"),
        ('{"objects": [{"category": "person", "attributes": "red", "box": [0, 0, 5, 5]}]}', "objects[0].attributes"),
        ('{"objects": [{"category": "person", "attributes": [3], "box": [0, 0, 5, 5]}]}', "objects[0].attributes[0]"),
        ('{"objects": [{"category": "person", "attributes": [], "box": [0, 0, 5]}]}', "four numbers"),
        ('{"objects": [{"category": "person", "attributes": [], "box": [0, 0, "5", 5]}]}', "four numbers"),
        ('{"objects": [{"category": "person", "attributes": [], "box": [10, 0, 5, 5]}]}', "inverted"),
        ('{"objects": [{"category": "person", "attributes": [], "box": [0, 0, 300, 50]}]}', "outside the 160x100"),
        ('{"objects": [{"category": "person", "attributes": [], "box": [0, 0, 5, 5], "id": [1]}]}', "objects[0].id"),
        ('[1, 2]', "objects[0] must be a JSON object"),
        ('"objects"', "the reply must be a JSON object"),
    ],
)
def test_malformed_replies(reply, needle):
    with pytest.raises(ReplyFormatError) as err:
        parse_frame_objects(reply, 160, 100)
    assert needle in str(err.value)


def test_too_many_objects_and_long_text():
    many = {"objects": [{"category": "person", "attributes": [], "box": [0, 0, 5, 5]}] * (MAX_OBJECTS + 1)}
    with pytest.raises(ReplyFormatError, match="at most"):
        parse_frame_objects(json.dumps(many), 160, 100)
    long = {"objects": [{"category": "x" * 200, "attributes": [], "box": [0, 0, 5, 5]}]}
    with pytest.raises(ReplyFormatError, match="longer than"):
        parse_frame_objects(json.dumps(long), 160, 100)


def test_extract_json_takes_the_first_decodable_object():
    assert extract_json('noise {"a": 1} more {"b": 2}') == {"a": 1}
    assert extract_json('{broken {"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(ReplyFormatError):
        extract_json("{not json at all")


@pytest.mark.parametrize(
    ("text", "direction"),
    [("up-right", "up-right"), ("Upper Right", "up-right"), ("right-up", "up-right"), ("up and to the left", "up-left"),
     ("downwards", "down"), ("toward the left", "left"), ("static", "stationary"), ("not moving", "stationary"),
     ("south east", "down-right")],
)
def test_direction_normalisation(text, direction):
    assert normalize_direction(text) == direction
    assert parse_motion(json.dumps({"direction": text, "speed": "medium"})).direction == direction


def test_motion_and_appearance_replies():
    reply = parse_motion('```json\n{"direction": "left", "speed": "fast"}\n```')
    assert (reply.direction, reply.speed) == ("left", "fast")
    assert parse_motion('{"direction": "left"}').speed is None
    with pytest.raises(ReplyFormatError, match="direction must be one of"):
        parse_motion('{"direction": "sideways"}')
    with pytest.raises(ReplyFormatError, match="speed must be one of"):
        parse_motion('{"direction": "left", "speed": "warp"}')
    with pytest.raises(ReplyFormatError, match="no 'direction'"):
        parse_motion('{"speed": "fast"}')
    app = parse_appearance('{"category": "Man", "attributes": ["White top", "grey shorts"]}')
    assert (app.category, app.attributes) == ("man", ["white top", "grey shorts"])
    with pytest.raises(ReplyFormatError, match="no 'attributes'"):
        parse_appearance('{"category": "man"}')


def test_categories():
    assert category_group("young man") == "person"
    assert category_group("Pedestrians") == "person"
    assert category_group("white SUV") == "vehicle"
    assert category_group("shopping trolleys") == "stroller"
    assert category_group("umbrella") == "umbrella"
    assert categories_agree("woman", "person")
    assert categories_agree("cyclist", "person")  # compatible groups: a rider is a person
    assert not categories_agree("car", "person")
    assert not categories_agree("dog", "bicycle")


def test_prompts_state_the_schema_and_image_size():
    prompt = frame_objects_prompt(640, 360)
    assert "640x360 pixels" in prompt
    assert json.dumps(FRAME_OBJECTS_SCHEMA, separators=(",", ":")) in prompt
    assert "blurred" in frame_objects_prompt(640, 360, focused=True)
    assert "normalised to 0-1000" in frame_objects_prompt(640, 360, "normalized_1000")
    assert "frames 3, 9, 15" in motion_prompt("a person (red coat)", [3, 9, 15])
    with pytest.raises(ValueError, match="box_format"):
        frame_objects_prompt(640, 360, "percent")
