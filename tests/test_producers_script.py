"""A Python baseline script decorated with @produces, run as a real script: its key names the script and
the function, not `__main__`, and is the same on every run with the same arguments."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import clean_env

from artifact_bus.protocol import validate_job

SCRIPT = '''
import json, sys
from datetime import date
import pyarrow as pa
from artifact_bus.producers import produces

@produces("baseline_pnl", key_args=["start"], root=sys.argv[1])
def baseline_pnl(start, scale=1.0):
    return pa.table({"symbol": ["AAPL", "MSFT"], "pnl": [1.5 * scale, -0.5 * scale]})

out = baseline_pnl(date.fromisoformat(sys.argv[2]), scale=float(sys.argv[3]))
print(json.dumps({"path": str(baseline_pnl.last_receipt.path), "rows": out.num_rows}))
'''


def run(tmp_path, root, start, scale):
    script = tmp_path / "baseline.py"
    script.write_text(SCRIPT)
    p = subprocess.run(
        [sys.executable, str(script), str(root), start, str(scale)],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["rows"] == 2
    return validate_job(out["path"]), script


def test_a_baseline_script_submits_with_a_stable_key(tmp_path, root):
    first, script = run(tmp_path, root, "2024-01-01", 1.0)
    again, _ = run(tmp_path, root, "2024-01-01", 2.0)  # scale is not in the key
    other, _ = run(tmp_path, root, "2024-02-01", 1.0)
    assert first["key"].startswith("produces:baseline_pnl:baseline.baseline_pnl:")
    assert again["key"] == first["key"] != other["key"]
    assert first["replace"] is True and first["producer"] == "baseline.py:baseline_pnl"
    info = first["meta"]["produces"]
    assert info == {
        "script": str(script),
        "function": "baseline.baseline_pnl",
        "args": {"start": "2024-01-01", "scale": 1.0},
    }
