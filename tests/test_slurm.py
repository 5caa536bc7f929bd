"""tools/slurm/train_stage.sbatch: it parses, names real fcn commands and options, gives each stage
the Makefile's --init files, and on SIGTERM passes the signal to the trainer, requeues the job and
exits 143 (run here with stand-ins for torchrun, scontrol and fcn; no Slurm needed)."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reproduce import experiments
from reproduce.pipeline.plan import init_files
from reproduce.commands.train_cli import train_command
from reproduce.commands.device_cli import check_device_command
from test_plan import makefile_dependencies

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "slurm" / "train_stage.sbatch"


def test_the_script_parses_and_asks_for_requeue_and_an_early_signal():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    directives = [l.split(None, 1)[1] for l in SCRIPT.read_text().splitlines() if l.startswith("#SBATCH")]
    assert "--requeue" in directives
    signal_line = next(d for d in directives if d.startswith("--signal="))
    m = re.fullmatch(r"--signal=B:TERM@(\d+)", signal_line)
    assert m and int(m.group(1)) >= 60  # time for the snapshot before the kill
    assert (ROOT / "tools" / "slurm" / "README.md").is_file()


def _options(command) -> set[str]:
    return {o for p in command.params for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))}


def test_the_script_uses_real_fcn_options():
    text = SCRIPT.read_text()
    call = re.search(r'"\$FCN" train (.*?)&\n', text, re.S).group(1)
    used = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", call))
    used |= set(re.findall(r"INIT_ARGS\+=\((--[a-z-]+)", text))
    assert used and used <= _options(train_command), used - _options(train_command)
    assert {"--init", "--out", "--device", "--data-root"} <= used
    checks = re.findall(r'"\$FCN" check-device (.*?)\|\|', text)
    assert checks and set(re.findall(r"(--[a-z-]+)", checks[0])) <= _options(check_device_command)
    assert "torchrun --standalone" in text and "--no-python" in text


def test_init_files_are_the_makefiles():
    text = (ROOT / "Makefile").read_text()
    calls = dict(re.findall(r"\$\(eval \$\(call train_from,([^,]+),([^,]+),", text))
    for name in experiments.names():
        made = [p.replace("$(RUNS)", "runs") for p in calls[name].split()]
        assert init_files(name, "runs") == made, name
    assert makefile_dependencies()  # the same parse as tests/test_plan.py


def _stubs(tmp_path: Path, trainer_body: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    (bin_dir / "torchrun").write_text("#!/bin/bash\n" f'echo "torchrun $*" >> {log}\n' + trainer_body)
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "scontrol $*" >> {log}\n')
    fcn = tmp_path / "fcn"
    fcn.write_text(f'#!/bin/bash\necho "fcn $*" >> {log}\n')
    for f in (bin_dir / "torchrun", bin_dir / "scontrol", fcn):
        f.chmod(0o755)
    runs = tmp_path / "runs"
    (runs / "init").mkdir(parents=True)
    (runs / "init" / "voc-fcn32s-from-vgg16.pt").write_bytes(b"")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FCN_REPO": str(ROOT), "RUNS": str(runs),
           "DATA": str(tmp_path / "data"), "FCN": str(fcn), "PY": sys.executable, "SLURM_JOB_ID": "4242",
           "SLURM_GPUS_ON_NODE": "2"}
    return {"env": env, "log": log, "runs": runs}


def test_a_finished_stage_exits_with_the_trainers_status(tmp_path):
    s = _stubs(tmp_path, "exit 0\n")
    r = subprocess.run(["bash", str(SCRIPT), "voc-fcn32s", "--keep-snapshots", "3"], env=s["env"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    log = s["log"].read_text()
    assert "fcn check-device --device cuda" in log
    run = next(l for l in log.splitlines() if l.startswith("torchrun"))
    args = shlex.split(run)
    assert args[1:5] == ["--standalone", "--nnodes=1", "--nproc_per_node=2", "--no-python"]
    assert args[6:8] == ["train", "voc-fcn32s"]
    assert f"--init {s['runs']}/init/voc-fcn32s-from-vgg16.pt" in run and f"--out {s['runs']}/voc-fcn32s" in run
    assert run.endswith("--keep-snapshots 3") and "scontrol" not in log


def test_a_later_stage_without_its_init_says_so(tmp_path):
    s = _stubs(tmp_path, "exit 0\n")
    r = subprocess.run(["bash", str(SCRIPT), "voc-fcn16s"], env=s["env"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"{s['runs']}/voc-fcn32s/final.pt, which does not exist yet" in r.stderr
    assert not s["log"].exists() or "torchrun" not in s["log"].read_text()


def test_sigterm_reaches_the_trainer_and_requeues(tmp_path):
    # the stand-in trainer: "writes its snapshot" on SIGTERM and exits 1, as torchrun does after a signal
    s = _stubs(tmp_path, f"trap 'echo snapshot-on-term >> {tmp_path}/log; kill $pid; exit 1' TERM\n"
                         f"sleep 60 >/dev/null 2>&1 & pid=$!\necho started >> {tmp_path}/log\nwait\n")
    proc = subprocess.Popen(["bash", str(SCRIPT), "voc-fcn32s"], env=s["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        if s["log"].exists() and "started" in s["log"].read_text():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the trainer did not start")
    proc.send_signal(signal.SIGTERM)  # what --signal=B:TERM@120 does
    out, err = proc.communicate(timeout=60)
    log = s["log"].read_text()
    assert proc.returncode == 143, err
    assert "snapshot-on-term" in log and "scontrol requeue 4242" in log
    assert "resumes from" in err
