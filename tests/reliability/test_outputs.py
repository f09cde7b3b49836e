"""Output folders are staged and owned: only a folder tvau created is replaced (with --overwrite), never one
holding an input or the current folder; Ctrl-C and SIGTERM leave nothing; a SIGKILL's leftovers are cleaned
by the next run with a note."""

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from tvau_lightning.atomic import OUTPUT_MARKER, OutputFolderError, atomic_directory, check_output_dir
from tvau_lightning.commands.build_dataset import build_dataset_main


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def write_output(out, name="result.txt", text="new", **kwargs):
    with atomic_directory(out, **kwargs) as stage:
        (stage / name).write_text(text)


def test_an_output_folder_holding_the_input_is_refused_and_the_input_kept(tmp_path):
    """`tvau analyze DIR/video.mp4 --out DIR --overwrite` used to delete the video with the folder."""
    folder = tmp_path / "clips"
    folder.mkdir()
    video = folder / "video.mp4"
    video.write_bytes(b"precious")
    for out in (folder, tmp_path):  # the folder of the video, and one above it
        with pytest.raises(OutputFolderError) as info:
            write_output(out, inputs=[video], overwrite=True)
        assert str(info.value) == (f"output folder {out} contains the input {video}; writing there could destroy it — "
                                   "choose an output folder outside the inputs")
    with pytest.raises(OutputFolderError, match="is the input"):
        write_output(folder, inputs=[folder], overwrite=True)
    assert video.read_bytes() == b"precious" and listing(folder) == ["video.mp4"]
    assert listing(tmp_path) == ["clips"]
    write_output(folder / "analysis", inputs=[video])  # a new folder beside the input is fine
    assert listing(folder / "analysis") == [OUTPUT_MARKER, "result.txt"]


def test_out_dot_is_refused_clearly_and_leaves_nothing(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", "..", "./"):
        with pytest.raises(OutputFolderError) as info:
            write_output(out, overwrite=True)
        where = "the current folder" if out != ".." else "a folder above the current one"
        assert str(info.value) == (f"output folder {out} is {where}: the output folder is replaced as a whole, so "
                                   "it must be a folder of its own — choose a new one, e.g. --out results")
    assert listing(work) == [] and listing(tmp_path) == ["work"]  # no ..partial-* / ..old-* folders
    write_output("results")  # the advice works
    assert listing(work / "results") == [OUTPUT_MARKER, "result.txt"]


def test_a_foreign_non_empty_folder_is_refused_even_with_overwrite(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputFolderError) as info:
        write_output(out, overwrite=True)
    assert str(info.value) == (
        f"output folder {out} is not empty and was not created by tvau (no {OUTPUT_MARKER} marker inside); it is "
        "never replaced or written into — choose a new or empty folder, or empty it yourself")
    assert listing(out) == ["thesis.tex"] and listing(tmp_path) == ["mine"]
    out.joinpath("thesis.tex").unlink()
    write_output(out)  # an empty folder is fine
    assert listing(out) == [OUTPUT_MARKER, "result.txt"]


def test_the_tools_own_folder_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "result"
    write_output(out, text="first")
    with pytest.raises(OutputFolderError) as info:
        write_output(out, text="second")
    assert str(info.value) == (f"output folder {out} already holds an earlier tvau output; pass --overwrite to "
                               "replace it, or choose another folder")
    assert (out / "result.txt").read_text() == "first"
    write_output(out, name="other.txt", text="second", overwrite=True)
    assert listing(out) == [OUTPUT_MARKER, "other.txt"]  # replaced as a whole
    assert listing(tmp_path) == ["result"]
    assert json.loads((out / OUTPUT_MARKER).read_text())["tool"] == "tvau-lightning"


def test_check_output_dir_for_folders_written_into(tmp_path):
    """`replace=False` (build-dataset resumes in its folder): the tool's own folder is reused without overwrite."""
    out = tmp_path / "dialogues"
    write_output(out)
    assert check_output_dir(out, replace=False) == out
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="exists and is not a folder"):
        check_output_dir(tmp_path / "file")


STAGING_SCRIPT = textwrap.dedent("""
    import sys, time
    from tvau_lightning.atomic import atomic_directory
    with atomic_directory(sys.argv[1], overwrite=True) as stage:
        (stage / "big.bin").write_bytes(b"0" * 1000)
        print("staged", flush=True)
        time.sleep(60)
""")


def stage_and_signal(out, signum):
    """Run a process that stages ``out``, send it ``signum`` while it stages; its exit status."""
    process = subprocess.Popen([sys.executable, "-c", STAGING_SCRIPT, str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "staged"
        process.send_signal(signum)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, process.stderr.read()


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 128 + 15), (signal.SIGINT, None)], ids=["TERM", "INT"])
def test_a_signal_while_staging_leaves_nothing_and_keeps_the_earlier_output(tmp_path, signum, status):
    out = tmp_path / "result"
    code, err = stage_and_signal(out, signum)
    if status is not None:
        assert code == status, err
    else:  # an uncaught KeyboardInterrupt: Python ends the process by SIGINT
        assert code in (-signal.SIGINT, 130) and "KeyboardInterrupt" in err
    assert listing(tmp_path) == []  # no result/, no .result.partial-*
    write_output(out, text="earlier")
    code, _ = stage_and_signal(out, signum)
    assert listing(tmp_path) == ["result"] and (out / "result.txt").read_text() == "earlier"


def test_stale_staging_of_a_killed_run_is_removed_with_a_note(tmp_path, capsys):
    out = tmp_path / "result"
    code, _ = stage_and_signal(out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    (stale,) = tmp_path.iterdir()
    assert stale.name.startswith(".result.partial-")
    write_output(out)
    assert capsys.readouterr().err == f"note: removed {stale}, the staging folder of an interrupted earlier run\n"
    assert listing(tmp_path) == ["result"]
    # killed between moving the earlier output aside and renaming the new one in: the earlier output comes back
    backup = tmp_path / ".result.old-x1y2"
    backup.mkdir()
    out.rename(backup / "old")
    write_output(out, text="newer", overwrite=True)
    assert capsys.readouterr().err == (f"note: restored {out} from {backup}, left by a run killed while replacing "
                                       "it\n")
    assert listing(tmp_path) == ["result"] and (out / "result.txt").read_text() == "newer"


def test_staging_of_a_run_still_going_is_left_alone(tmp_path):
    out = tmp_path / "result"
    process = subprocess.Popen([sys.executable, "-c", STAGING_SCRIPT, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "staged"
        (staging,) = [p for p in tmp_path.iterdir() if p.name.startswith(".result.partial-")]
        write_output(out, overwrite=True)  # a second writer of the same folder does not delete the first's staging
        assert staging.is_dir()
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert not staging.exists()


# ------------------------------------------------------------------------------------------ build-dataset
def folder_dataset(root):
    for name in ("a",):
        frames = root / "videos" / name
        frames.mkdir(parents=True)
        for t in range(3):
            Image.fromarray(np.full((16, 16, 3), 40 * t, np.uint8)).save(frames / f"{t:03d}.png")
    (root / "labels.json").write_text(json.dumps({"a": 0}))
    return root


def build(root, out):
    return build_dataset_main(["--source", "folder", "--root", str(root), "--annotator", "ground-truth",
                               "--verify", "none", "--no-progress", "--dense-records", "--out", str(out)])


def test_build_dataset_refuses_a_folder_holding_its_videos_or_someone_elses(tmp_path, capsys):
    root = folder_dataset(tmp_path / "data")
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert build(root, root) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tvau build-dataset: error: output folder {root} contains the input {root}/videos/a; ")
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before  # nothing written there
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("x")
    assert build(root, foreign) == 2
    assert f"output folder {foreign} is not empty and was not created by tvau" in capsys.readouterr().err
    assert listing(foreign) == ["todo.txt"]


def test_build_dataset_out_dot_works_in_an_empty_folder_and_resumes(tmp_path, monkeypatch, capsys):
    root = folder_dataset(tmp_path / "data")
    here = tmp_path / "dialogues"
    here.mkdir()
    monkeypatch.chdir(here)
    assert build(root, ".") == 0
    assert {OUTPUT_MARKER, "phase_a.jsonl", "phase_b.jsonl", "summary.json", "work"} <= set(listing(here))
    assert build(root, ".") == 0  # its own folder: resumed, nothing asked again
    printed = json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")
    assert (printed["done"], printed["skipped"], printed["failed"]) == (0, 1, 0)
    assert listing(tmp_path) == ["data", "dialogues"]


def test_build_dataset_sigterm_leaves_no_temporary_file(tmp_path):
    """SIGTERM while the builder writes: exit status 143, the interruption note, only whole files left."""
    root = folder_dataset(tmp_path / "data")
    out = tmp_path / "out"
    script = textwrap.dedent("""
        import sys, time
        import tvau_lightning.builder.pipeline as pipeline
        from tvau_lightning.commands.build_dataset import build_dataset_main
        real = pipeline.DatasetBuilder.process_video
        def slow(self, video):
            work = real(self, video)
            print("processing", flush=True)
            time.sleep(60)
            return work
        pipeline.DatasetBuilder.process_video = slow
        sys.exit(build_dataset_main(sys.argv[1:]))
    """)
    process = subprocess.Popen([sys.executable, "-c", script, "--source", "folder", "--root", str(root),
                                "--annotator", "ground-truth", "--verify", "none", "--no-progress", "--dense-records",
                                "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "processing"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143
    assert "interrupted: finished videos are cached in" in process.stderr.read()
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == [OUTPUT_MARKER, "work", f"work/{OUTPUT_MARKER}", "work/settings.json"]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


# ------------------------------------------------------------------------------------------ predict writer
def test_the_predict_writer_refuses_a_foreign_folder_before_predicting(tmp_path):
    from lightning.pytorch import Trainer

    from tvau_lightning.inference.writers import HeatmapWriter

    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "paper.pdf").write_bytes(b"%PDF")
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    with pytest.raises(OutputFolderError, match=f"output folder {foreign} is not empty and was not created by tvau"):
        HeatmapWriter(str(foreign)).setup(trainer, None, "predict")
    assert listing(foreign) == ["paper.pdf"]
    fresh = tmp_path / "heatmaps"
    HeatmapWriter(str(fresh)).setup(trainer, None, "predict")
    HeatmapWriter(str(fresh)).setup(trainer, None, "predict")  # its own folder: a second prediction writes again
    assert listing(fresh) == [OUTPUT_MARKER]
