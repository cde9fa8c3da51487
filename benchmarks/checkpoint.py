"""Checkpoint cost for the reference model: save and load time, file size against the raw parameter bytes,
and the training slowdown of refreshing ``last.ckpt`` every N steps. Prints a markdown table.

    python benchmarks/checkpoint.py              # full: 1000 training steps per timing run
    python benchmarks/checkpoint.py --quick      # 100 steps, fewer repeats (checks that it runs)
    python benchmarks/checkpoint.py --device cuda

Targets (reference model: MLP 3-64x4-2, PersistentAdam, 4096/1024/1024-point pools): save <= 100 ms,
load <= 200 ms, size <= 3.5 x parameter bytes + 64 KiB, overhead <= 2 % at every 100 steps.

Save is ``Trainer.save_checkpoint`` (gather every state, serialise, checksum, write, fsync, rename); load is
:func:`pinn.io.checkpointing.load_checkpoint` (read, verify, unpickle with ``weights_only``). The overhead is measured
twice: directly (training with and without ``RunCheckpoint(every_n_train_steps=N)``, alternating runs) and as
save time / (N x step time), which is steadier on a busy machine.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pinn.cli import cli_main  # noqa: E402
from pinn.io.checkpointing import (  # noqa: E402
    FORMAT_VERSION,
    RunCheckpoint,
    VerifiedCheckpointIO,
    atomic_write,
    deflate,
    load_checkpoint,
    plain,
    seal,
)
from pinn.training.module import ElasticPINN  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs/plane_wave.yaml"

TARGETS = {"save": 100.0, "load": 200.0, "size_factor": 3.5, "size_extra": 64 * 1024, "overhead": 2.0}


def reference(device: str, max_steps: int, callbacks: list, root: Path) -> tuple[L.Trainer, ElasticPINN]:
    """The setup of configs/plane_wave.yaml, ready to train ``max_steps`` steps without validation or logging."""
    # built by the CLI from the config itself, so the benchmark follows the reference setup when it changes
    cli = cli_main(["-c", str(CONFIG), "--seed_everything", "0", "--trainer.logger", "false"], run=False)
    model, data = cli.model, cli.datamodule
    trainer = L.Trainer(
        max_steps=max_steps, accelerator=device, devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=bool(callbacks), limit_val_batches=0, inference_mode=False,
        callbacks=callbacks, plugins=[VerifiedCheckpointIO()], default_root_dir=root,
    )
    trainer.fit(model, data)
    return trainer, model


class Clock(L.Callback):
    """Wall time of the training loop alone (no start-up, no teardown)."""

    def on_train_start(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self.seconds = time.perf_counter() - self.start

    @staticmethod
    def _sync(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def save_stages(trainer: L.Trainer, path: Path, repeats: int) -> dict[str, float]:
    """Median milliseconds of each stage of a save, done by hand in the order ``save_checkpoint`` does them."""
    times: dict[str, list[float]] = {}

    def stage(name, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        times.setdefault(name, []).append((time.perf_counter() - start) * 1e3)
        return out

    for _ in range(repeats):
        state = stage("gather states", trainer._checkpoint_connector.dump_checkpoint, False)
        archive = stage("torch.save to memory", lambda: torch_save(plain({**state, "format_version": FORMAT_VERSION})))
        archive = stage("deflate", deflate, archive)
        archive = stage("sha-256", seal, archive)
        stage("write + fsync + rename", atomic_write, path, archive)
    return {name: statistics.median(ms) for name, ms in times.items()}


def torch_save(payload) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def part_bytes(value) -> int:
    return len(torch_save(value))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (checks that it runs)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--every", type=int, default=100, help="checkpoint interval for the overhead, in steps")
    args = parser.parse_args()
    steps, repeats = (100, 1) if args.quick else (1000, 3)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        trainer, model = reference(args.device, 3, [], root)
        path = root / "bench.ckpt"
        save_ms = timed(lambda: trainer.save_checkpoint(path, weights_only=False), 5 if args.quick else 20)
        load_ms = timed(lambda: load_checkpoint(path), 5 if args.quick else 20)
        size = path.stat().st_size
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        stages = save_stages(trainer, root / "stages.ckpt", 5 if args.quick else 20)
        ckpt = load_checkpoint(path)
        parts = {
            "weights": part_bytes(ckpt["state_dict"]),
            "optimizer": part_bytes(ckpt["optimizer_states"]),
            "data pools + generator": part_bytes(ckpt["ElasticDataModule"]),
            "random states": part_bytes(ckpt["rng_states"]),
        }

        plain_s, ckpt_s = [], []
        for _ in range(repeats):  # alternate, so drifting machine load hits both alike
            clock = Clock()
            reference(args.device, steps, [clock], root / "a")
            plain_s.append(clock.seconds)
            clock = Clock()
            saver = RunCheckpoint(dirpath=root / "b", monitor=None, save_top_k=0, save_last=True,
                                  every_n_train_steps=args.every)
            reference(args.device, steps, [clock, saver], root / "b")
            ckpt_s.append(clock.seconds)

    step_ms = min(plain_s) / steps * 1e3
    measured = (min(ckpt_s) - min(plain_s)) / min(plain_s) * 100
    estimated = statistics.median(save_ms) / (args.every * step_ms) * 100
    limit = TARGETS["size_factor"] * param_bytes + TARGETS["size_extra"]
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"Checkpoint cost, reference model ({param_bytes // 4} parameters), {device}, torch {torch.__version__}\n")
    print("| quantity | value | target |")
    print("|---|---|---|")
    print(f"| save (median / min of {len(save_ms)}) | {statistics.median(save_ms):.1f} / {min(save_ms):.1f} ms "
          f"| <= {TARGETS['save']:.0f} ms |")
    print(f"| load + verify (median / min of {len(load_ms)}) | {statistics.median(load_ms):.1f} / "
          f"{min(load_ms):.1f} ms | <= {TARGETS['load']:.0f} ms |")
    print(f"| file size | {size / 1024:.1f} KiB = {size / param_bytes:.2f} x parameter bytes "
          f"({param_bytes / 1024:.1f} KiB) | <= {limit / 1024:.1f} KiB |")
    for name, ms in stages.items():
        print(f"| - of which {name} | {ms:.1f} ms | |")
    for name, nbytes in parts.items():
        print(f"| - of which {name} | {nbytes / 1024:.1f} KiB | |")
    print(f"| training step (no checkpoints) | {step_ms:.2f} ms | |")
    print(f"| overhead, last.ckpt every {args.every} steps: measured | {measured:+.2f} % "
          f"({steps} steps, best of {repeats}) | <= {TARGETS['overhead']:.0f} % |")
    print(f"| overhead, last.ckpt every {args.every} steps: save / ({args.every} x step) | {estimated:.2f} % "
          f"| <= {TARGETS['overhead']:.0f} % |")


if __name__ == "__main__":
    main()
