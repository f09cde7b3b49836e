"""The UCF-Crime and XD-Violence annotation readers: every line form the public files use, and every error."""

from __future__ import annotations

import numpy as np
import pytest

from tvau_lightning.data.clips import DatasetFormatError
from tvau_lightning.data.temporal_annotations import (
    UCF_CRIME_CATEGORIES,
    XD_VIOLENCE_CODES,
    TemporalSegment,
    frame_targets,
    parse_ucf_crime_annotations,
    parse_xd_violence_annotations,
    to_half_open,
    ucf_crime_category_of,
    xd_violence_codes_of,
)


def _write(tmp_path, text: str, name: str = "ann.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# ------------------------------------------------------------------------------------------------ conventions
@pytest.mark.parametrize(("convention", "expected"), [
    ("one_based_inclusive", (164, 240)), ("zero_based_inclusive", (165, 241)), ("zero_based_exclusive", (165, 240)),
])
def test_range_conventions(convention, expected):
    assert to_half_open(165, 240, convention) == expected


def test_frame_targets_clip_to_the_video_and_set_categories():
    segments = [TemporalSegment(2, 4, ("Abuse",)), TemporalSegment(8, 20, ("Abuse",))]
    labels, cats = frame_targets(10, segments, UCF_CRIME_CATEGORIES, "one_based_inclusive")
    expected = np.zeros(10, dtype=np.int64)
    expected[1:4] = 1  # 1-based frames 2..4
    expected[7:] = 1  # 8..20, clipped at the last frame
    np.testing.assert_array_equal(labels, expected)
    assert (cats[:, 1] == expected.astype(bool)).all() and (cats[:, 0] == ~expected.astype(bool)).all()
    assert cats.sum(axis=1).tolist() == [1] * 10
    _, multi = frame_targets(6, [TemporalSegment(0, 3, ("B2", "G"))], XD_VIOLENCE_CODES, "zero_based_exclusive")
    assert multi[:3, [2, 6]].all() and not multi[3:, 1:].any() and multi.sum(axis=1).tolist() == [2, 2, 2, 1, 1, 1]


# ------------------------------------------------------------------------------------------------ UCF-Crime
def test_ucf_official_line_forms(tmp_path):
    text = ("Abuse028_x264.mp4  Abuse  165  240  -1  -1  \n"          # the official form: 2 spaces, trailing ones
            "Arson011_x264.mp4  Arson  150  420  680  1267  \n"       # two ranges
            "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1  \n"  # a normal video
            "\n# a comment\n"
            "Burglary035_x264.mp4 Burglary 1 1740 -1 -1\r\n"          # single spaces, CRLF, range from frame 1
            "RoadAccidents001_x264\tRoadAccidents\t210\t300\t-1\t-1") # tabs, no .mp4, no final newline
    annotations = parse_ucf_crime_annotations(_write(tmp_path, "\ufeff" + text))
    assert list(annotations) == ["Abuse028_x264", "Arson011_x264", "Normal_Videos_003_x264", "Burglary035_x264",
                                 "RoadAccidents001_x264"]
    assert annotations["Abuse028_x264"].segments == (TemporalSegment(165, 240, ("Abuse",)),)
    assert [(s.start, s.end) for s in annotations["Arson011_x264"].segments] == [(150, 420), (680, 1267)]
    assert annotations["Normal_Videos_003_x264"].segments == () and not annotations["Normal_Videos_003_x264"].abnormal
    assert annotations["Burglary035_x264"].source.endswith("ann.txt:6")


@pytest.mark.parametrize(("line", "message"), [
    ("Abuse028_x264.mp4  Abuse  165  240  -1", "expected 'video category start1 end1 start2 end2'"),
    ("Abuse028_x264.mp4  Abuse  165  2x0  -1  -1", "expected 'video category"),
    ("Abuse028_x264.mp4  Abuse  165  -1  -1  -1", "both ends or neither"),
    ("Abuse028_x264.mp4  Abuse  240  165  -1  -1", "ends before it starts"),
    ("Abuse028_x264.mp4  Kidnapping  165  240  -1  -1", "unknown category 'Kidnapping'"),
    ("Normal_Videos_003_x264.mp4  Normal  5  9  -1  -1", "a Normal video has an anomalous range"),
    ("Abuse028_x264.mp4  Abuse  -1  -1  -1  -1", "has no range"),
    ("Abuse028_x264.mp4  Abuse  0  240  -1  -1", "set range_convention"),
])
def test_ucf_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path, "Arson009_x264.mp4  Arson  220  315  -1  -1  \n" + line + "\n")
    with pytest.raises(DatasetFormatError, match=message) as error:
        parse_ucf_crime_annotations(path)
    assert f"{path} line 2" in str(error.value)


def test_ucf_zero_based_files_accept_frame_zero_and_repeats_fail(tmp_path):
    path = _write(tmp_path, "Abuse028_x264.mp4  Abuse  0  240  -1  -1\n")
    assert parse_ucf_crime_annotations(path, "zero_based_inclusive")["Abuse028_x264"].segments[0].start == 0
    twice = _write(tmp_path, "Abuse028_x264.mp4  Abuse  1  2  -1  -1\nAbuse028_x264.mp4  Abuse  3  4  -1  -1\n", "b.txt")
    with pytest.raises(DatasetFormatError, match="annotated twice"):
        parse_ucf_crime_annotations(twice)
    with pytest.raises(ValueError, match="unknown range_convention"):
        parse_ucf_crime_annotations(path, "matlab")


def test_ucf_category_from_file_names():
    assert ucf_crime_category_of("Abuse/Abuse001_x264.mp4") == "Abuse"
    assert ucf_crime_category_of("RoadAccidents133_x264") == "RoadAccidents"
    assert ucf_crime_category_of("Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4") == "Normal"
    assert ucf_crime_category_of("Normal_Videos_944_x264.mp4") == "Normal"
    with pytest.raises(DatasetFormatError, match="cannot tell the UCF-Crime category of 'Riot001_x264.mp4'"):
        ucf_crime_category_of("Riot001_x264.mp4")


# ------------------------------------------------------------------------------------------------ XD-Violence
def test_xd_label_codes_from_names():
    assert xd_violence_codes_of("v=S-7rRLrxnVQ__#1_label_B4-0-0") == ("B4",)
    assert xd_violence_codes_of("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6.mp4") == ("G", "B2", "B6")
    assert xd_violence_codes_of("A.Beautiful.Mind.2001__#00-01-45_00-02-50_label_A") == ("A",)
    for name, message in [("clip_without_label.mp4", "no '_label_"), ("x_label_B3-0-0", "unknown label code"),
                          ("x_label_A-B1-0", "'A' alone"), ("x_label_0-0-0", "'A' alone")]:
        with pytest.raises(DatasetFormatError, match=message):
            xd_violence_codes_of(name)


def test_xd_official_and_per_segment_line_forms(tmp_path):
    text = ("v=u5SF4SlqNDQ__#00-00-00_00-01-00_label_G-0-0 624 912 950 1441\n"
            "Bad.Boys.II.2003__#00-06-42_00-10-00_label_B2-G-0 2610 2670 2760 3060\n"   # multi-label: the set
            "v=U6MC8JJJZSY__#1_label_G-0-0.mp4 150 779\n"                                 # a .mp4 suffix
            "Casino.Royale.2006__#00-18-30_00-19-20_label_G-B2-0 B2 261 293 G 293 580\n"  # per-segment categories
            "v=vhACO_m5pH0__#00-17-42_00-18-40_label_B6-0-0 0 45 148 218  1010 1060\n")  # a double space
    annotations = parse_xd_violence_annotations(_write(tmp_path, text))
    assert annotations["v=u5SF4SlqNDQ__#00-00-00_00-01-00_label_G-0-0"].segments == (
        TemporalSegment(624, 912, ("G",)), TemporalSegment(950, 1441, ("G",)))
    assert {s.categories for s in annotations["Bad.Boys.II.2003__#00-06-42_00-10-00_label_B2-G-0"].segments} == {
        ("B2", "G")}
    assert "v=U6MC8JJJZSY__#1_label_G-0-0" in annotations
    assert annotations["Casino.Royale.2006__#00-18-30_00-19-20_label_G-B2-0"].segments == (
        TemporalSegment(261, 293, ("B2",)), TemporalSegment(293, 580, ("G",)))
    assert len(annotations["v=vhACO_m5pH0__#00-17-42_00-18-40_label_B6-0-0"].segments) == 3


@pytest.mark.parametrize(("line", "message"), [
    ("v=a__#1_label_B1-0-0 10 20 30", "pairs of frame numbers"),
    ("v=a__#1_label_B1-0-0", "pairs of frame numbers"),
    ("v=a__#1_label_B1-0-0 10 2o", "pairs of frame numbers"),
    ("v=a__#1_label_B1-0-0 20 10", "ends before it starts"),
    ("v=a__#1_label_B1-0-0 10 10", "ends before it starts"),
    ("v=a__#1_label_B9-0-0 10 20", "unknown label code"),
    ("v=a__#1_label_A 10 20", "normal video"),
    ("v=a__#1_label_B1-0-0 B1 10 20 B7 30 40", "unknown segment category 'B7'"),
    ("v=a__#1_label_B1-0-0 B1 10 20 B1 30", "category start end"),
    ("v=b__#1_label_B2-0-0 1 2", "annotated twice"),
])
def test_xd_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path, "v=b__#1_label_B2-0-0 5 9\n" + line + "\n")
    with pytest.raises(DatasetFormatError, match=message) as error:
        parse_xd_violence_annotations(path)
    assert f"{path} line 2" in str(error.value)


def test_missing_annotation_file_says_what_to_set(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation_file"):
        parse_xd_violence_annotations(tmp_path / "nope.txt")
