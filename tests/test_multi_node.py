"""recipes/accelerate/multi_node.yaml run for real: two `accelerate launch` "machines" on localhost (one gloo CPU
process each) against the single-machine two-process run; and what the FSDP config does on CPUs."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from test_recipes import ACCELERATE_2, RECIPES, ROOT, _run

ACCELERATE = ROOT / "recipes" / "accelerate"
# the multi-node config as documented, with what two CPU "machines" on one host need overridden: the address and a
# free port, 2 processes in all (one per machine), fp32 (the config's bf16 autocast would make the comparison with
# the fp32 single-machine run meaningless). Its MULTI_GPU type stays: without a GPU each process is a gloo CPU process.
MULTI_NODE = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE / "multi_node.yaml"),
              "--num_machines", "2", "--num_processes", "2", "--main_process_ip", "127.0.0.1",
              "--mixed_precision", "no"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    """Ends the launchers and their workers (torchrun starts each worker in its own session, so a signal to the
    launcher's process group would miss them): SIGTERM, then SIGKILL after 30 s, each process by its id."""
    import psutil

    family = []
    for proc in procs:
        if proc.poll() is None:
            try:
                family += [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    for member in family:
        try:
            member.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=30)
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    for proc in procs:
        proc.wait(timeout=30)


def _launch_two_machines(cmd: list[str], logs: Path, timeout: float = 600) -> list[str]:
    """Starts machine 0 and machine 1 at once and waits for both; a failure or a timeout of either stops both.
    Returns each machine's stdout (stdout/stderr go to files: pipes read one after the other could fill up)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # CPU processes (gloo) even on a GPU machine
    port = str(_free_port())
    logs.mkdir(parents=True, exist_ok=True)
    procs, files = [], []
    try:
        for rank in (0, 1):
            out, err = open(logs / f"machine{rank}.out", "w"), open(logs / f"machine{rank}.err", "w")  # noqa: SIM115
            files += [out, err]
            procs.append(subprocess.Popen([*MULTI_NODE, "--machine_rank", str(rank), "--main_process_port", port,
                                           *cmd], stdout=out, stderr=err, text=True, env=env))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break  # one machine failed: the other would wait for it in a collective
            time.sleep(0.5)
    finally:
        codes = [p.poll() for p in procs]
        _stop(procs)
        for f in files:
            f.close()
    report = "\n".join(f"machine {rank}: exit {codes[rank]}\n" + (logs / f"machine{rank}.out").read_text()[-2000:]
                       + (logs / f"machine{rank}.err").read_text()[-4000:] for rank in (0, 1))
    assert codes == [0, 0], f"(exit None: stopped, still running when the other failed or after {timeout} s)\n" + report
    return [(logs / f"machine{rank}.out").read_text() for rank in (0, 1)]


def _quickstart(out: Path, *extra: str) -> list[str]:
    return [str(RECIPES / "quickstart.py"), "--dataset", "embedded:tiny", "--report_to", "none", "--max_steps", "3",
            "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "64", "--seed", "0",
            "--dataloader_num_workers", "0", "--disable_tqdm", "true", "--output_dir", str(out), *extra]


def _scores(folder: Path) -> dict:
    metrics = json.loads((folder / "eval_results.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second"))}


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def test_multi_node_config_on_two_localhost_machines_equals_one_machine(tiny_data, tmp_path):
    """Both stages over 2 "machines" × 1 process write one output folder (only global rank 0 writes; the student
    on both machines loads the teacher it saved) with the weights of the 1 machine × 2 processes run, bit for bit:
    same seed, same ranks, same data shards, and a 2-rank gloo all-reduce adds the same two numbers either way."""
    one, two = tmp_path / "one_machine", tmp_path / "two_machines"
    # tiny_data: the embedded data is cached before either launch; port 0: a free one (29500 may be taken)
    _run([*ACCELERATE_2, "--main_process_port", "0"], _quickstart(one))
    stdout = _launch_two_machines(_quickstart(two), tmp_path / "logs")

    # one writer: machine 1 (global rank 1, but local rank 0 there) reports and writes nothing
    assert stdout[0].count(f"wrote {two / 'teacher'}, {two / 'student'} (Hub-ready)") == 1
    assert "wrote " not in stdout[1] and "teacher (BSCE)" not in stdout[1]
    assert _files(two) == _files(one)
    for stage in ("teacher", "student"):
        log = json.loads((two / stage / "run_log.json").read_text())
        assert (log["world_size"], log["status"], log["effective_train_batch_size"]) == (2, "complete", 16)
        # written by machine 0 alone: machine 1's launcher command (--machine_rank 1) appears nowhere
        assert log["launcher"] == "accelerate" and "--num_machines 2" in log["command"], log["command"]
        assert "--machine_rank 0" in log["command"] and "multi_node.yaml" in log["command"]
        assert "--machine_rank 1" not in (two / stage / "README.md").read_text()
        a, b = load_file(one / stage / "model.safetensors"), load_file(two / stage / "model.safetensors")
        assert a.keys() == b.keys() and len(a) > 100
        assert all(torch.equal(a[key], b[key]) for key in a), [key for key in a if not torch.equal(a[key], b[key])]
        assert _scores(one / stage) == _scores(two / stage)
    assert json.loads((two / "student" / "config.json").read_text())["dive"]["teacher"]["name_or_path"] == str(
        two / "teacher")


PROBE = """
import os, sys, torch
from accelerate import Accelerator
accelerator = Accelerator(cpu=True)  # what TrainingArguments(use_cpu=True) sets up on a machine without a GPU
model, _ = accelerator.prepare(torch.nn.Linear(2, 2), torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
with open(os.path.join(sys.argv[1], f"rank{accelerator.process_index}.txt"), "w") as f:
    f.write(" ".join(str(x) for x in (os.environ.get("ACCELERATE_USE_FSDP"), os.environ.get("FSDP_VERSION"),
            accelerator.num_processes, accelerator.state.distributed_type.value,
            getattr(accelerator.state, "fsdp_plugin", None), type(model).__name__)))
"""


def test_fsdp_config_on_cpus_is_plain_ddp(tmp_path):
    """What README's "Launching" says of fsdp.yaml without a GPU: the launcher sets FSDP up (ACCELERATE_USE_FSDP,
    FSDP_VERSION=2) but Accelerate's AcceleratorState turns a process into FSDP only from a multi-accelerator type
    (MULTI_GPU, …), never from MULTI_CPU, so the plugin is dropped and the model is DDP-wrapped, without a warning.
    (torch's own fully_shard does run on CPU/gloo.) When this fails, Accelerate has changed: test FSDP for real."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE / "fsdp.yaml"),
                "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "0"]
    _run(launcher, [str(script), str(tmp_path)], timeout=300)
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == "true 2 2 MULTI_CPU None DistributedDataParallel"


def test_a_trainer_says_when_the_launch_asked_for_fsdp_and_did_not_get_it(tmp_path, tiny_splits, monkeypatch, caplog):
    """Since Accelerate drops FSDP in silence on CPUs (above), dive_hf says so, and the run log records what ran."""
    import logging

    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer

    _, train, _ = tiny_splits
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    args = BalancedSoftmaxConfig(output_dir=str(tmp_path / "t"), max_steps=1, per_device_train_batch_size=8,
                                 report_to="none", use_cpu=True, disable_tqdm=True)
    with caplog.at_level(logging.WARNING, logger="dive_hf.trainer.base"):
        trainer = BalancedSoftmaxTrainer(model="resnet20_cifar", args=args, train_dataset=train)
    assert any("asked for FSDP" in r.getMessage() for r in caplog.records)
    trainer.train()
    assert json.loads((tmp_path / "t" / "run_log.json").read_text())["distributed_type"] == "NO"
