"""Build the decode corpus of ``video_corpus.py`` in a directory and print, per file, maskvid's frame count against a
sequential decode's and how many decode calls gave exactly its frames (``maskvid probe-video --verify``'s check).

    .venv/bin/python tests/corpus_report.py /tmp/corpus
"""

from __future__ import annotations

import os
import sys
import time

from maskvid.data import probe_video
from maskvid.data.verify import verify_decoding
from video_corpus import MADE, MissingTool, real_footage


def main(root: str) -> int:
    os.makedirs(root, exist_ok=True)
    files = {}
    for name, (make, _) in MADE.items():
        try:
            files[name] = make(root)
        except MissingTool as e:
            print(f"skipped {name}: {e}", file=sys.stderr)
    files.update({f"real: {name}": path for name, path in sorted(real_footage().items())})
    print("| file | container / codec | addressing | frames: maskvid / sequential | exact calls / calls | s |")
    print("|---|---|---|---|---|---|")
    failures = 0
    for name, path in files.items():
        start = time.perf_counter()
        info = probe_video(path)
        check = verify_decoding(path)
        failures += not check.ok
        print(f"| {name} | {info.container.split(',')[0]} / {info.codec} | {info.addressing} | {check.frames} / "
              f"{check.sequential_frames} | {check.exact} / {check.calls} | {time.perf_counter() - start:.1f} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "corpus"))
