"""The engine benchmark runs end to end in its smoke size and finds the engine deciding exactly what
the published rule decides (the benchmark itself asserts that; here only that it ran and said so).
No timings are checked."""
import json
import subprocess
import sys


def test_engine_bench_quick(tmp_path, root):
    out = tmp_path / "engine.json"
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "engine_bench.py"), "--quick", "--no-memory", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=root,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Decisions identical:" in proc.stdout
    assert "DECISIONS DIFFER" not in proc.stdout
    result = json.loads(out.read_text())
    assert result["decisions_identical"] is True
    assert {row["compared"] for row in result["rows"]} == {"full", "sampled"}
    assert all(row["compared_events"] > 0 for row in result["rows"])
