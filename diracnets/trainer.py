"""The training loop: SGD with a step schedule, checkpoints every epoch, exact resume, clean stops.

One :class:`Trainer` runs one training job, in one process or as one rank of a ``torchrun``
job. What it guarantees:

- **exact resume**: the checkpoint holds the model, optimizer and AMP-scaler states, the
  position (epoch *and* batch), the running sums of a partial epoch, the history and the global
  RNG states; the data order and augmentation are functions of ``(seed, epoch, batch)``. On the
  CPU a resumed run ends with the very weights of an uninterrupted one.
- **clean stops**: SIGINT (Ctrl-C) or SIGTERM asks for a stop; the current batch finishes, a
  checkpoint of that exact point is written and :class:`TrainingInterrupted` is raised. A second
  Ctrl-C aborts at once (the previous checkpoint stays).
- **no NaN training**: a non-finite loss stops the run before the bad step is applied, with
  :class:`NonFiniteLossError`; the last good checkpoint is left untouched.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .datasets import Dataset, load_dataset
from .loaders import make_loaders
from .metrics import Meter, write_json, write_jsonl
from .rng import capture_rng_state, restore_rng_state, seed_everything
from .scales import parameter_groups, scale_snapshot

# settings that may differ when resuming; any other difference would not be the same run
RESUMABLE = frozenset({"epochs", "milestones", "out", "progress", "onnx", "workers", "device",
                       "data_dir", "amp"})
# what a run writes; a fresh run with overwrite=True removes these (and nothing else)
RUN_FILES = ("config.json", "metrics.jsonl", "curves.png", "alpha.png", "last.pt", "best.pt",
             "model.safetensors", "model.onnx", "summary.json")
Callback = Callable[[str, "Trainer"], None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before applying that step."""


class TrainingInterrupted(Exception):
    """The run was asked to stop; ``checkpoint`` is where it can be resumed from."""

    def __init__(self, checkpoint: Path | None, epoch: int, batch: int) -> None:
        self.checkpoint, self.epoch, self.batch = checkpoint, epoch, batch
        where = f"; resume with --resume {checkpoint}" if checkpoint else ""
        super().__init__(f"stopped at epoch {epoch + 1}, batch {batch}{where}")


def build_model(config: TrainConfig, dataset: Dataset) -> nn.Module:
    """The DiracNet the config describes, shaped for ``dataset`` (channels, classes, size)."""
    from dirac_core import nets
    from dirac_torch.models import build

    spec_fn = nets.diracnet_cifar if config.arch == "cifar" else nets.diracnet_imagenet
    spec = spec_fn(
        config.depth, config.width, dataset.num_classes, activation=config.activation,
        parameterization=config.parameterization, per_channel=config.per_channel,
        in_channels=dataset.in_channels, image_size=dataset.image_size,
    )
    return build(spec, alpha_init=config.alpha0, beta_init=config.beta0)


def lr_at(config: TrainConfig, epoch: int) -> float:
    """The learning rate of (0-based) ``epoch``: ``lr * lr_gamma ** (milestones passed)``."""
    passed = sum(epoch >= m for m in config.resolved_milestones())
    return config.lr * config.lr_gamma**passed


class _StopRequest:
    """SIGINT/SIGTERM handlers that ask for a stop at the next batch boundary."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user really means now
        self.requested = True
        print("\nstop requested: finishing this batch and saving a checkpoint "
              "(Ctrl-C again to abort without saving)", flush=True)

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Trainer:
    """Train a model as ``config`` says; see the module docstring for the guarantees.

    Parameters
    ----------
    config : TrainConfig
    model_factory : callable, optional
        ``(config, dataset) -> nn.Module``; default :func:`build_model`. Called after seeding.
    dataset : Dataset, optional
        Default: :func:`load_dataset` of ``config.data``.
    resume_state : dict, optional
        A loaded checkpoint to continue from (see :meth:`from_checkpoint`).
    callbacks : sequence of callables
        ``callback(event, trainer)`` with ``event`` in ``"batch_end"``, ``"epoch_end"``. A
        callback may call :meth:`request_stop` (or raise ``KeyboardInterrupt``) to stop.
    overwrite : bool
        A fresh run into a directory that already holds a checkpoint is refused (it would be
        lost) unless this is true; then the earlier run's files are removed first.

    Raises
    ------
    FileExistsError
        ``config.out`` holds a checkpoint, this is not a resume and ``overwrite`` is false.

    Examples
    --------
    >>> cfg = TrainConfig(depth=10, epochs=1, train_limit=256, progress=False,
    ...                   out=tempfile.mkdtemp())  # doctest: +SKIP
    >>> Trainer(cfg).fit()["val_acc"]  # doctest: +SKIP
    0.9...
    """

    def __init__(self, config: TrainConfig, *,
                 model_factory: Callable[[TrainConfig, Dataset], nn.Module] | None = None,
                 dataset: Dataset | None = None, resume_state: dict[str, Any] | None = None,
                 callbacks: Sequence[Callback] = (), overwrite: bool = False) -> None:
        self.config, self.callbacks = config, list(callbacks)
        self.run_dir = Path(config.out)
        if resume_state is None:
            _claim_run_dir(self.run_dir, overwrite)
        self.context, self.device = distributed.setup(config.device)
        seed_everything(config.seed)
        self.dataset = dataset if dataset is not None else load_dataset(
            config.data, config.data_dir, config.image_size)
        self.model = (model_factory or build_model)(config, self.dataset).to(self.device)
        self.train_loader, self.val_loader = make_loaders(
            self.dataset, config.batch_size, seed=config.seed, rank=self.context.rank,
            world=self.context.world, device=self.device, workers=config.workers,
            train_limit=config.train_limit)
        self.optimizer = torch.optim.SGD(
            parameter_groups(self.model, config.weight_decay, config.decay_scales),
            lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
        self.amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch, self.batch, self.meter, self._train_s = 0, 0, Meter(), 0.0
        self.best_acc, self.best_epoch, self.history = -math.inf, 0, []
        self._stop = _StopRequest()
        if resume_state is not None:
            self._restore(resume_state)
        self.net = self.model
        if self.context.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    # -- public ------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | Path, overrides: dict[str, Any] | None = None,
                        **kw: Any) -> Trainer:
        """Continue the run saved in ``path``, with its saved config.

        ``overrides`` may change only the settings in :data:`RESUMABLE` (say, ``epochs`` to
        train longer); ``kw`` goes to the constructor.

        Raises
        ------
        CheckpointError
            The checkpoint is missing, tampered with, or does not fit the model.
        ValueError
            An override outside :data:`RESUMABLE`.
        """
        state = load_checkpoint(path)
        config = resumed_config(state["config"], overrides or {})
        return cls(config, resume_state=state, **kw)

    def request_stop(self) -> None:
        """Stop after the current batch, saving a checkpoint (what Ctrl-C does)."""
        self._stop.requested = True

    def fit(self) -> dict[str, Any]:
        """Train to ``config.epochs``; return the last epoch's record.

        Raises
        ------
        TrainingInterrupted
            A stop was requested; the checkpoint to resume from is attached.
        NonFiniteLossError
            The loss became NaN or infinite.
        """
        if self.context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", self.config.to_dict())
        try:
            with self._stop.installed():
                while self.epoch < self.config.epochs:
                    self._train_epoch()
                    self._end_epoch()
        finally:
            self._plot()
        return self.history[-1] if self.history else {}

    def state(self) -> dict[str, Any]:
        """Everything a checkpoint holds (see the module docstring)."""
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "meter": self.meter.state(),
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "rng": capture_rng_state(),
        }

    # -- one epoch ---------------------------------------------------------------------------

    def _train_epoch(self) -> None:
        from tqdm.auto import tqdm

        lr = lr_at(self.config, self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        started = time.perf_counter()
        bar = tqdm(total=len(self.train_loader), initial=self.batch, unit="batch",
                   desc=f"epoch {self.epoch + 1}/{self.config.epochs}", leave=False,
                   disable=not (self.config.progress and self.context.is_main), dynamic_ncols=True)
        with bar:
            for images, labels in self.train_loader.batches(self.epoch, self.batch):
                stop = self._step(images, labels, lr)
                bar.update()
                bar.set_postfix(loss=f"{self.meter.loss:.4f}", acc=f"{self.meter.accuracy:.3f}",
                                lr=f"{lr:.3g}")
                if stop:
                    self._interrupt()
        self._train_s = time.perf_counter() - started

    def _step(self, images: torch.Tensor, labels: torch.Tensor, lr: float) -> bool:
        """One SGD step; returns whether any rank asked to stop."""
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            logits = self.net(images)
            loss = F.cross_entropy(logits.float(), labels)
        stats = torch.stack([
            loss.detach().double() * labels.numel(),
            (logits.argmax(1) == labels).sum().double(),
            torch.tensor(labels.numel(), dtype=torch.float64, device=self.device),
            torch.tensor(float(self._stop.requested), dtype=torch.float64, device=self.device),
        ])
        loss_sum, correct, seen, stop = distributed.all_reduce_sum(stats, self.context).tolist()
        if not math.isfinite(loss_sum):
            self._non_finite(loss_sum / seen, lr)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.meter.add(loss_sum, correct, seen)
        self.batch += 1
        try:
            self._notify("batch_end")
        except KeyboardInterrupt:
            self.request_stop()
        return stop > 0 or (self._stop.requested and not self.context.enabled)

    def _end_epoch(self) -> None:
        started = time.perf_counter()
        val = self.evaluate()
        record = {
            "epoch": self.epoch + 1,
            "lr": lr_at(self.config, self.epoch),
            "train_loss": self.meter.loss,
            "train_acc": self.meter.accuracy,
            "val_loss": val.loss,
            "val_acc": val.accuracy,
            "train_s": self._train_s,
            "eval_s": time.perf_counter() - started,
            **scale_snapshot(self.model),
        }
        self.history.append(record)
        self.epoch, self.batch, self.meter = self.epoch + 1, 0, Meter()
        improved = record["val_acc"] > self.best_acc
        if improved:
            self.best_acc, self.best_epoch = record["val_acc"], record["epoch"]
        self._save(best=improved)
        if self.context.is_main:
            write_jsonl(self.run_dir / "metrics.jsonl", self.history)
        try:
            self._notify("epoch_end")
        except KeyboardInterrupt:
            self.request_stop()
        if self._any_rank(self._stop.requested) and self.epoch < self.config.epochs:
            self._interrupt(saved=True)

    @torch.no_grad()
    def evaluate(self) -> Meter:
        """Loss and accuracy on the validation split (summed over ranks)."""
        distributed.broadcast_buffers(self.model, self.context)
        self.model.eval()
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        for images, labels in self.val_loader.batches():
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                logits = self.model(images).float()
            totals += torch.stack([
                F.cross_entropy(logits, labels, reduction="sum").double(),
                (logits.argmax(1) == labels).sum().double(),
                torch.tensor(labels.numel(), dtype=torch.float64, device=self.device),
            ])
        return Meter(*distributed.all_reduce_sum(totals, self.context).tolist())

    # -- stopping, saving, restoring -------------------------------------------------------------

    def _interrupt(self, saved: bool = False) -> None:
        path = self.run_dir / "last.pt"
        if not saved:
            self._save(best=False)
        raise TrainingInterrupted(path if self.context.is_main else None, self.epoch, self.batch)

    def _non_finite(self, loss: float, lr: float) -> None:
        last = self.run_dir / "last.pt"
        kept = (f"the last good checkpoint {last} (after epoch {self.epoch}) is kept"
                if last.exists() else "no checkpoint was written yet (it failed in epoch 1)")
        raise NonFiniteLossError(
            f"the training loss became {loss} at epoch {self.epoch + 1}, batch {self.batch + 1} "
            f"(lr={lr:g}); stopped before applying that step. {kept}. A lower --lr, or "
            f"--no-amp on CUDA, usually cures it."
        )

    def _save(self, best: bool) -> None:
        if not self.context.is_main:
            return
        state = self.state()
        save_checkpoint(state, self.run_dir / "last.pt")
        if best:
            save_checkpoint(state, self.run_dir / "best.pt")

    def _any_rank(self, flag: bool) -> bool:
        value = torch.tensor([float(flag)], dtype=torch.float64, device=self.device)
        return bool(distributed.all_reduce_sum(value, self.context).item() > 0)

    def _plot(self) -> None:
        if not (self.context.is_main and self.history):
            return
        from .plots import plot_curves, plot_scales

        plot_curves(self.history, self.run_dir / "curves.png")
        plot_scales(self.history, self.run_dir / "alpha.png")

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"the checkpoint does not fit this model/optimizer: {exc}") from exc
        self.epoch, self.batch = state["epoch"], state["batch"]
        self.meter = Meter(*state["meter"])
        self.best_acc, self.best_epoch = state["best_acc"], state["best_epoch"]
        self.history = list(state["history"])
        restore_rng_state(state["rng"])

    def _notify(self, event: str) -> None:
        for callback in self.callbacks:
            callback(event, self)


def _claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start over a run's checkpoint, or clear that run's files when told to."""
    if not (run_dir / "last.pt").exists():
        return
    if not overwrite:
        raise FileExistsError(
            f"run directory {str(run_dir)!r} already holds a run (last.pt); continue it with "
            f"--resume {run_dir / 'last.pt'}, pick another --out, or pass --overwrite"
        )
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)


def resumed_config(saved: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """The checkpoint's config ``saved`` with ``overrides`` (only :data:`RESUMABLE` ones may
    differ from the saved values)."""
    values = dict(saved)
    for name, value in overrides.items():
        if value == saved.get(name):
            continue
        if name not in RESUMABLE:
            raise ValueError(
                f"cannot change {name} when resuming (checkpoint: {saved.get(name)!r}, asked: "
                f"{value!r}); only {sorted(RESUMABLE)} may change"
            )
        values[name] = value
    return TrainConfig.from_dict(values)
