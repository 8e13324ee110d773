"""The bad-input corpus (tests/bad_input/*.yaml, format in its README): every case, run as a real
`dicekit` command in a fresh folder, exits 2 with exactly one line on stderr naming the culprit, no
traceback, and writes nothing."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted((ROOT / "tests" / "bad_input").glob("*.yaml"))


def fast_round(tiny_world) -> dict:
    """A valid config of a fast round on the tiny world: each case changes what it is about."""
    return dict(run_dir="run", policy=tiny_world["policy"], reference=tiny_world["reference"],
                prompts=tiny_world["prompts"], offline_data=tiny_world["offline"], samples_per_prompt=4,
                min_valid_samples=2, max_new_tokens=16, temperature=1.0, generate_batch_size=16, shard_prompts=4,
                global_batch_size=4, per_device_batch_size=2, max_steps=3, learning_rate=1e-3, min_chars=0)


def fill(text: str, values: dict) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another live process holding the run folder's lock (as a running round would)."""
    code = ("import sys, time\nfrom dicekit import rundir\nwith rundir.run_lock(sys.argv[1], 'dicekit run-round'):\n"
            "    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def read_only_command(folder: Path, cmd: list[str]) -> list[str]:
    """``cmd`` run with ``folder`` read-only: chmod for an ordinary user; as root (who ignores
    permissions) inside a private mount namespace with ``folder`` bind-mounted read-only."""
    if os.geteuid() != 0:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        return cmd
    if not shutil.which("unshare"):
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("running as root and unshare -m is not permitted: cannot make a folder read-only")
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(folder), *cmd]


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_input_case(case, tiny_world, tmp_path):
    spec = yaml.safe_load(case.read_text(encoding="utf-8"))
    values = {"policy": tiny_world["policy"], "reference": tiny_world["reference"], "prompts": tiny_world["prompts"],
              "offline": tiny_world["offline"], "cfg": "cfg.yaml"}
    work = tmp_path / "work"
    work.mkdir()
    for d in spec.get("dirs", []):
        (work / d).mkdir(parents=True)
    for name, text in (spec.get("files") or {}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(fill(text, values), encoding="utf-8")
    for name, text in (spec.get("bytes") or {}).items():
        (work / name).write_bytes(text.encode("latin-1"))
    if "{cfg}" in spec["argv"]:
        cfg = {**fast_round(tiny_world), **(spec.get("config") or {})}
        (work / "cfg.yaml").write_text(yaml.safe_dump({k: v for k, v in cfg.items() if v is not None}))
    cmd = [sys.executable, "-m", "dicekit", *[fill(str(a), values) for a in spec["argv"]]]
    holder = hold_lock(work / spec["hold_lock"]) if spec.get("hold_lock") else None
    if spec.get("readonly"):
        cmd = read_only_command(work / spec["readonly"], cmd)
    before = snapshot(work)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **{k: str(v) for k, v in (spec.get("env") or {}).items()}}
    try:
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env, timeout=300)
        seconds = time.monotonic() - t0
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (case.stem, r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr and len(lines) == 1, (case.stem, r.stderr[-3000:])
    for needle in spec.get("expect", []):
        assert needle in lines[0], (case.stem, needle, lines[0])
    if spec.get("expect_any"):
        assert any(n in lines[0] for n in spec["expect_any"]), (case.stem, lines[0])
    for needle in spec.get("not_expect", []):
        assert needle not in lines[0], (case.stem, needle, lines[0])
    assert snapshot(work) == before, (case.stem, "wrote", set(snapshot(work)) ^ set(before))
    if spec.get("max_seconds"):
        assert seconds < spec["max_seconds"], (case.stem, seconds)


def test_the_corpus_covers_the_issue_rows():
    """Each case file says what it reproduces and what it expects (a case that expects nothing
    could not fail)."""
    assert len(CASES) >= 20
    for case in CASES:
        spec = yaml.safe_load(case.read_text(encoding="utf-8"))
        assert spec.get("about") and spec.get("argv") and (spec.get("expect") or spec.get("expect_any")), case.stem
