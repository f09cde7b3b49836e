"""Workers of the library's DataLoaders do not hang on PyAV decoders inherited from the parent.

The scenario is the one the test suite ran into: the parent decodes with a frame-threaded PyAV reader and drops
it inside a reference cycle (garbage not yet collected), then a loader forks workers whose garbage collector runs.
A plain ``torch.utils.data.DataLoader`` hangs there (the worker frees a decoder whose threads exist only in the
parent: measured on this machine, it never returns); :class:`ForkSafeDataLoader` collects and freezes the heap
around the fork. Run in a subprocess with a timeout, so a regression fails instead of hanging the suite."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import av
import numpy as np

SCENARIO = textwrap.dedent('''
    import gc, sys
    import torch
    from torch.utils.data import Dataset
    from tvau_lightning.data.loader import ForkSafeDataLoader
    from tvau_lightning.data.video import PyAVVideo

    class Collects(Dataset):
        def __len__(self):
            return 4
        def __getitem__(self, i):
            gc.collect()  # the worker's collector reaches what it inherited
            return torch.tensor(i)

    gc.disable()  # the cycle below stays uncollected until the loader starts, as between two collections
    reader = PyAVVideo(sys.argv[1])  # frame-threaded decoding (FFmpeg picks the threads)
    reader.read(list(range(8)))
    cycle = [reader]
    cycle.append(cycle)
    del reader, cycle
    print(sorted(int(x) for x in ForkSafeDataLoader(Collects(), num_workers=2, batch_size=None)))
''')


def test_workers_do_not_hang_on_decoders_the_parent_dropped(tmp_path):
    video = tmp_path / "v.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for _ in range(12):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    done = subprocess.run([sys.executable, "-c", SCENARIO, str(video)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[0, 1, 2, 3]"


def test_the_datamodules_use_it(synthetic_ubnormal):
    from tvau_lightning.data.loader import ForkSafeDataLoader
    from tvau_lightning.data.ubnormal import UBnormalDataModule

    dm = UBnormalDataModule(str(synthetic_ubnormal.root), str(synthetic_ubnormal.split_dir), clip_len=8,
                            frame_size=(32, 48), num_workers=0)
    assert isinstance(dm.train_dataloader(), ForkSafeDataLoader)
    assert isinstance(dm.test_dataloader(), ForkSafeDataLoader)
