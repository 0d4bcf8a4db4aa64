"""Job ids: the package makes its ULIDs itself (the producer's import stays light); python-ulid, a widely used
implementation of the ULID spec, checks that they are the same ULIDs, byte for byte, and ordered the same way."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from artifact_bus.core import is_job_id, job_millis, new_job_id, ulid_text

MILLIS = st.integers(0, 2**48 - 1)
RANDOM = st.integers(0, 2**80 - 1)


@given(MILLIS, RANDOM)
def test_same_text_as_python_ulid(millis, randomness):
    raw = millis.to_bytes(6, "big") + randomness.to_bytes(10, "big")
    text = ulid_text(millis, randomness)
    assert text == str(ULID.from_bytes(raw))
    assert bytes(ULID.from_str(text)) == raw and job_millis(text) == millis


def test_new_ids_parse_and_increase():
    ids = [new_job_id() for _ in range(20_000)]  # many share a millisecond: each is the last plus 1 there
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    parsed = [ULID.from_str(i) for i in ids]
    assert all(is_job_id(i) for i in ids)
    assert [p.milliseconds for p in parsed] == [job_millis(i) for i in ids]
    same_ms = [(a, b) for a, b in zip(parsed, parsed[1:]) if a.milliseconds == b.milliseconds]
    assert same_ms, "no two ids in one millisecond: the monotonic path went untested"
    assert all(int(b) == int(a) + 1 for a, b in same_ms)


def test_forked_child_does_not_repeat_the_parent():
    # parent and child continue from the same state, in the same millisecond (a stopped clock): without the
    # process check both would make the parent's last id plus 1
    code = (
        "import os\n"
        "import artifact_bus.core as core\n"
        "core._millis = lambda: 1765000000000\n"
        "core.new_job_id()\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(w, core.new_job_id().encode())\n"
        "    os._exit(0)\n"
        "mine = core.new_job_id()\n"
        "os.waitpid(pid, 0)\n"
        "print(mine, os.read(r, 26).decode())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    parent, child = out.stdout.split()
    assert parent[:10] == child[:10] and parent != child, (parent, child)
