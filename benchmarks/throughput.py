"""P1 / P4: the DiVE training step against the plain (Balanced-Softmax) step of the same student.

Both steps run the project's own pieces on random data: student forward + backward + SGD step with the BSCE loss
(plain), plus the frozen teacher's forward (``FrozenTeacher``: inference mode) and the DiVE loss (DiVE). Timing: a
warm-up, then the median of ``--steps`` steps of each, the two modes interleaved step by step so that a busy machine
slows both alike (CUDA events on a GPU, ``perf_counter`` on the CPU).
Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU each mode runs in a fresh process and reports
its peak resident set size (polled every ms) above the process after imports. The last line is the DiVE/plain throughput ratio.

    python benchmarks/throughput.py                                         # CPU: resnet18 at 64 px, batch 32
    python benchmarks/throughput.py --student resnext50_32x4d --image_size 224 --batch_size 256 --precision bf16 \\
        --channels_last --compile                                           # the P1 setting on a GPU
    python benchmarks/throughput.py --smoke                                 # seconds, for the tests
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import dive_hf  # noqa: F401  (registers the CIFAR ResNets)
from dive_hf.losses import balanced_softmax_cross_entropy_from_prior, dive_loss_terms_from_prior, log_prior
from dive_hf.models import create_timm_model
from dive_hf.teacher import FrozenTeacher


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", default="resnet18")
    p.add_argument("--teacher", default=None, help="default: the student's architecture")
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_classes", type=int, default=100)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile student and teacher")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps")
    p.add_argument("--json", default=None, help="Also write the unrounded rows and ratio to this JSON file.")
    p.add_argument("--only", choices=["plain", "dive"], help=argparse.SUPPRESS)  # one mode, JSON out (CPU memory)
    return p


def _rss() -> int:
    """Current resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


class RssPeak:
    """Highest resident set size while the block runs, polled every millisecond by a thread (CPU runs: torch has
    no peak counter for host memory, and ru_maxrss already holds the peak of the imports)."""

    def __enter__(self):
        import threading

        self.peak, self._stop = _rss(), threading.Event()

        def poll():
            while not self._stop.wait(0.001):
                self.peak = max(self.peak, _rss())

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def build_step(args, mode: str):
    """A closure doing one training step of ``mode`` ("plain" or "dive") on fixed random data."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    counts = [max(1, int(500 * 100 ** (-i / (args.num_classes - 1)))) for i in range(args.num_classes)]
    prior = log_prior(counts, device=device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    student = create_timm_model(args.student, args.num_classes).to(device).to(memory_format=memory_format)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9,
                                **({"fused": True} if device.type == "cuda" else {}))
    teacher = None
    if mode == "dive":
        teacher = FrozenTeacher(create_timm_model(args.teacher or args.student, args.num_classes)).to(device)
        teacher = teacher.to(memory_format=memory_format)
    forward_student, forward_teacher = student, teacher
    if args.compile:
        forward_student = torch.compile(student)
        forward_teacher = torch.compile(teacher) if teacher is not None else None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, args.num_classes, (args.batch_size,), device=device)

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = forward_student(x)
            if teacher is None:
                loss = balanced_softmax_cross_entropy_from_prior(logits, y, prior)
            else:
                loss = dive_loss_terms_from_prior(logits, forward_teacher(x), y, prior, 3.0, 0.5, 0.5).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(step, device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def measure_speed(args) -> dict[str, float]:
    """Median seconds per step of each mode, the two interleaved step by step (machine drift hits both alike)."""
    device = torch.device(args.device)
    steps = {mode: build_step(args, mode) for mode in ("plain", "dive")}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times = {mode: [] for mode in steps}
    for _ in range(args.steps):
        for mode, step in steps.items():
            times[mode].append(timed(step, device))
    return {mode: statistics.median(values) for mode, values in times.items()}


def peak_memory(args, mode: str) -> float:
    """Peak MB of a few steps of ``mode``: CUDA allocator peak, or (CPU) RSS growth in a fresh process."""
    if args.device == "cpu" and not args.only:
        argv = [a for a in sys.argv[1:] if a != "--only"] + ["--only", mode]
        out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.splitlines()[-1])["peak_mb"]
    if args.device != "cpu":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    baseline = _rss()
    with RssPeak() as rss:
        step = build_step(args, mode)
        for _ in range(3):
            step()
    if args.device != "cpu":
        return torch.cuda.max_memory_allocated() / 2**20
    return (rss.peak - baseline) / 2**20


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    if args.smoke:
        args.student, args.image_size, args.batch_size, args.num_classes = "resnet20_cifar", 32, 8, 10
        args.steps, args.warmup = 3, 1
    if args.only:
        print(json.dumps({"mode": args.only, "peak_mb": peak_memory(args, args.only)}))
        return 0
    speed = measure_speed(args)
    memory = {mode: peak_memory(args, mode) for mode in ("plain", "dive")}
    rows = [{"mode": m, "step_ms": 1000 * speed[m], "images_per_s": args.batch_size / speed[m], "peak_mb": memory[m]}
            for m in ("plain", "dive")]
    plain, dive = rows
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.student} student, {args.teacher or args.student} teacher, {args.image_size} px, batch "
          f"{args.batch_size}, {args.precision}{', channels_last' if args.channels_last else ''}"
          f"{', compiled' if args.compile else ''}; {where}; median of {args.steps} steps")
    print(f"{'step':<8}{'ms/step':>10}{'img/s':>12}{'peak MB':>10}")
    for row in rows:
        print(f"{row['mode']:<8}{row['step_ms']:>10.2f}{row['images_per_s']:>12,.0f}{row['peak_mb']:>10,.0f}")
    ratio = dive["images_per_s"] / plain["images_per_s"]
    if args.json:  # the unrounded figures, for whoever compares them (the table rounds img/s to integers)
        Path(args.json).write_text(json.dumps({"rows": rows, "ratio": ratio}, indent=2))
    print(f"memory ratio (DiVE / plain): {dive['peak_mb'] / plain['peak_mb']:.2f}")
    print(f"ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
