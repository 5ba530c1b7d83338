"""`gan-ssl train ARGS...` in this process, killed with SIGKILL in the middle of its N-th checkpoint write.

    python tests/fault_helper.py N MODE ARGS...     MODE: half (half the temp file written) | rename (the whole
                                                    temp file written and synced, killed before the rename)

Used by tests/test_faults.py: a kill inside `write_atomic` must leave every checkpoint on disk loadable and the
run resumable bit-exactly.
"""
import os
import signal
import sys
import tempfile
from pathlib import Path

from gan_ssl.engine import checkpoint as ckpt_io


def main() -> None:
    n, mode, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    real_write, calls = ckpt_io.write_atomic, [0]

    def dying_write(data: bytes, path: str | Path) -> None:
        calls[0] += 1
        if calls[0] < n:
            return real_write(data, path)
        path = Path(path)
        fd, _ = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # as write_atomic does
        os.write(fd, data if mode == "rename" else data[: len(data) // 2])
        os.fsync(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    ckpt_io.write_atomic = dying_write
    from gan_ssl.cli import main as cli_main

    sys.argv = ["gan-ssl", "train", *args]
    cli_main()


if __name__ == "__main__":
    main()
