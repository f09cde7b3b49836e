"""The dialogue JSONL schema: round trip, validation errors that name the line and the fix."""

import json

import pytest

from tvau_lightning.data.dialogue_schema import (
    DialogueFormatError,
    DialogueRecord,
    Turn,
    dialogue_prefixes,
    load_dialogues,
    write_dialogues,
)


def _record() -> DialogueRecord:
    return DialogueRecord(
        video="Scene1/abnormal_scene_1_scenario_1.mp4",
        video_id="abnormal_scene_1_scenario_1",
        dataset="ubnormal",
        label=1,
        frame_range=(10, 57),
        turns=[
            Turn("user", "Is there any anomaly in this video?"),
            Turn("assistant", "Yes.", "yesno"),
            Turn("user", "Describe the abnormal target."),
            Turn("assistant", "A person in a red coat.", "target"),
        ],
        references={"target": ["a person wearing red"]},
    )


def test_round_trip(tmp_path):
    path = tmp_path / "d.jsonl"
    assert write_dialogues(path, [_record(), _record()]) == 2
    back = load_dialogues(path)
    assert back == [_record(), _record()]
    assert back[0].references_for("target") == ["A person in a red coat.", "a person wearing red"]
    assert [a.content for _, a in dialogue_prefixes(back[0].turns)] == ["Yes.", "A person in a red coat."]
    # no temp files are left next to the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda o: o.pop("video_id"), "missing required field 'video_id'"),
        (lambda o: o["turns"][1].update(kind="color"), "turns[1].kind must be one of"),
        (lambda o: o["turns"].insert(0, {"role": "assistant", "content": "x", "kind": "other"}), "alternate"),
        (lambda o: o.update(frame_range=[9, 3]), "frame_range"),
        (lambda o: o.update(label=2), "'label' must be 0"),
        (lambda o: o.update(references={"colour": ["x"]}), "references key 'colour'"),
    ],
)
def test_errors_name_line_and_field(tmp_path, mutate, needle):
    good = _record().to_json()
    bad = _record().to_json()
    mutate(bad)
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(DialogueFormatError) as err:
        load_dialogues(path)
    assert f"{path}:3" in str(err.value)
    assert needle in str(err.value)


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(DialogueFormatError, match=r"d.jsonl:1: not valid JSON"):
        load_dialogues(path)
    with pytest.raises(FileNotFoundError, match="tvau build-dataset"):
        load_dialogues(tmp_path / "missing.jsonl")
