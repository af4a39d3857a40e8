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
- **early stopping**: a callback calling :meth:`Trainer.stop` ends training *normally*: the
  current batch finishes, a checkpoint of that point is written and :meth:`Trainer.fit`
  returns, so ``run_training`` folds and summarises the run as after the last epoch.
- **readable logs**: one plain line per epoch; tqdm progress bars only on a terminal.
- **no NaN training**: a non-finite loss stops the run before the bad step is applied, with
  :class:`NonFiniteLossError`; a non-finite validation loss, parameter or batch-norm statistic
  stops it with :class:`~diracnets.divergence.DivergenceError` before anything is saved. The
  last good checkpoint is left untouched and no file ever holds a non-finite value.
- **one run per folder**: the run claims its folder (:mod:`.rundir`): a new run only in a new
  or empty folder (or over its own earlier run with ``overwrite``), a resumed run only in the
  folder of the run that wrote the checkpoint, and never two processes at once.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .datasets import Dataset, load_dataset
from .divergence import (
    DivergenceError,
    non_finite_entries,
    require_finite_loss,
    require_finite_model,
)
from .input_size import check_input_size
from .loaders import make_loaders
from .memory import require_fits
from .metrics import Meter, write_json, write_jsonl
from .precise_bn import recalibrate_batchnorm
from .recipes import adapt_dataset, recipe
from .resume import resumed_config
from .rng import capture_rng_state, restore_rng_state, seed_everything
from .rundir import RunFolder, RunFolderError, check_new, check_resume
from .saved import resumed_network
from .scales import parameter_groups, scale_snapshot
from .stop_signals import StopRequest
from .sync_bn import desynchronize_batchnorm, synchronize_batchnorm
from .training_state import check_state

Callback = Callable[[str, "Trainer"], None]
Log = Callable[[str], None]


class NonFiniteLossError(DivergenceError):
    """The loss became NaN or infinite; the run stopped before applying that step."""


class TrainingInterrupted(Exception):
    """The run was asked to stop; ``checkpoint`` is where it can be resumed from."""

    def __init__(self, checkpoint: Path | None, epoch: int, batch: int) -> None:
        self.checkpoint, self.epoch, self.batch = checkpoint, epoch, batch
        where = (f"; resume with --resume {checkpoint.parent} (in Python: "
                 f"Trainer.from_checkpoint) to continue" if checkpoint else "")
        super().__init__(f"stopped at epoch {epoch + 1}, batch {batch}{where}")


def build_model(config: TrainConfig, dataset: Dataset, spec: Any = None) -> nn.Module:
    """The DiracNet the config describes, shaped for ``dataset`` (channels, classes, size);
    with ``spec`` (a :class:`dirac_core.nets.NetSpec`: a resumed run's recorded network),
    that network, initialised as the config says."""
    from dirac_torch.models import build

    if spec is None:
        spec = config.spec(dataset.num_classes, dataset.in_channels, dataset.image_size)
    return build(spec, alpha_init=config.alpha_init, beta_init=config.beta_init,
                 init_std=config.init_std)


def lr_at(config: TrainConfig, epoch: int) -> float:
    """The learning rate of (0-based) ``epoch``: ``lr * lr_gamma ** (milestones passed)``."""
    passed = sum(epoch >= m for m in config.resolved_milestones())
    return config.lr * config.lr_gamma**passed


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
        A loaded checkpoint to continue from (see :meth:`from_checkpoint`); without
        ``model_factory`` the network is the one ``config.out``'s ``config.json`` records.
    callbacks : sequence of callables
        ``callback(event, trainer)`` with ``event`` in ``"batch_end"``, ``"epoch_end"``. A
        callback may call :meth:`stop` to end training early (normally), or
        :meth:`request_stop` (or raise ``KeyboardInterrupt``) to interrupt it (to resume later).
    log : callable or None
        Receives the one-line report of each epoch (and of an early stop); default ``print``.
        ``None`` keeps the trainer quiet. Only the main process logs.
    overwrite : bool
        A fresh run into a folder that already holds a run is refused (it would be lost)
        unless this is true; then the files the earlier run wrote are removed first.
    run_folder : RunFolder, optional
        ``config.out`` already claimed by the caller (the depth experiment); by default the
        trainer claims it (:mod:`.rundir`) when it is built, and :meth:`close` releases it.
    kind : str
        The kind of run the folder is marked with (``"train"``; ``"demo"`` for
        ``diracnets demo``): ``overwrite`` replaces only a run of the same kind.

    Raises
    ------
    RunFolderError
        ``config.out`` is not empty and not this run's folder, holds a run and ``overwrite``
        is false, or is in use by another process.

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
                 callbacks: Sequence[Callback] = (), overwrite: bool = False,
                 log: Log | None = print, run_folder: RunFolder | None = None,
                 kind: str = "train") -> None:
        self.config, self.callbacks, self._log = config, list(callbacks), log
        self.run_dir, self.kind = Path(config.out), kind
        self._model_from_config = model_factory is None
        self.context, self.device = distributed.setup(config.device)
        if run_folder is None:  # fail before any work, on every rank (rank 0 decides)
            self._on_main(lambda: _check_folder(self.run_dir, resume_state, overwrite, kind))
        seed_everything(config.seed)
        self.recipe = recipe(config.recipe)
        self.dataset = adapt_dataset(dataset if dataset is not None else load_dataset(
            config.data, config.data_dir, config.image_size), config.recipe)
        data = (self.dataset.num_classes, self.dataset.in_channels, self.dataset.image_size)
        # a resumed run continues the network its folder records, which for a run of an
        # earlier release is not the one its settings describe now (diracnets.saved)
        self._recorded = (resumed_network(self.run_dir, config, data)
                          if resume_state is not None and model_factory is None else None)
        if model_factory is None:  # refused in one line when it cannot fit, before building
            spec = self._recorded[1] if self._recorded else config.spec(*data)
            require_fits(spec, -(-config.batch_size // self.context.world), self.device)
            self.model = build_model(config, self.dataset, spec).to(self.device)
        else:
            self.model = model_factory(config, self.dataset).to(self.device)
        spec = getattr(self.model, "spec", None)
        check_input_size(  # before the folder is claimed: a misfit leaves nothing behind
            self.model, self.dataset.in_channels, self.dataset.image_size,
            model_name=spec.name if spec is not None else type(self.model).__name__,
            data=config.data, device=self.device,
            batch_size=max(config.batch_size // self.context.world, 1))
        self.train_loader, self.val_loader = make_loaders(
            self.dataset, config.batch_size, seed=config.seed, rank=self.context.rank,
            world=self.context.world, device=self.device, workers=config.workers,
            train_limit=config.train_limit)
        if config.sync_bn and self.context.enabled:
            synchronize_batchnorm(self.model)
        self.optimizer = torch.optim.SGD(
            parameter_groups(self.model, config.weight_decay, config.decay_scales,
                             self.recipe.decay),
            lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
        self.amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch, self.batch, self.meter, self._train_s = 0, 0, Meter(), 0.0
        self.best_acc, self.best_epoch, self.history = -math.inf, 0, []
        self._stop = StopRequest()
        self._finish: str | None = None  # why a callback ended training early
        self.stopped: dict[str, Any] | None = None  # where and why it ended early
        if resume_state is not None:
            self._restore(resume_state)
        self.net = self.model
        if self.context.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self._holding = False
        self.folder = self._claim(resume_state, overwrite, run_folder)

    def _on_main(self, action: Callable[[], Any]) -> Any:
        """``action`` on rank 0 (:func:`.distributed.on_main`); a refusal leaves the process
        group first, so each rank ends with the one-line error alone."""
        try:
            return distributed.on_main(action, self.context)
        except RunFolderError:
            distributed.teardown(self.context)
            raise

    # -- public ------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | Path, overrides: dict[str, Any] | None = None,
                        **kw: Any) -> Trainer:
        """Continue the run saved in ``path`` (a checkpoint, or a run directory: its
        ``last.pt``), with its saved config.

        The run continues in the folder ``path`` lies in, which must be that run's folder
        (:func:`.rundir.check_resume`); a folder stored in the checkpoint is never used.
        ``overrides`` may change only the settings in :data:`.resume.RESUMABLE` (say, ``epochs`` to
        train longer); ``out``, if given, must be that folder. ``kw`` goes to the constructor.

        The network is the one the folder's ``config.json`` records
        (:func:`.saved.resumed_network`; by the settings only when it records none): a run saved
        by an earlier release continues as it was trained, with an
        :class:`~diracnets.config.EarlierReleaseWarning`, even where its settings now describe
        another network.

        Raises
        ------
        CheckpointError
            The checkpoint is missing, tampered with, has the wrong structure, or does not fit
            the model.
        RunFolderError
            The checkpoint does not lie in its run's folder, or ``out`` names another folder.
        ValueError
            An override outside :data:`.resume.RESUMABLE`;
            (:class:`~dirac_core.untrusted.UntrustedInputError`) a ``config.json`` whose
            architecture is not valid, not the checkpoint's settings' network, or of other
            data than the run continues on.
        """
        path = Path(path)
        if path.is_dir():  # a run folder: its last checkpoint
            path = path / "last.pt"
        state = load_checkpoint(path)
        check_state(state, path)
        folder = path.parent
        overrides = dict(overrides or {})
        out = overrides.pop("out", None)
        if out is not None and Path(out).resolve() != folder.resolve():
            raise RunFolderError(
                f"--out {out!r} with --resume: a run continues in its own folder "
                f"{str(folder)!r}, where the checkpoint lies; drop --out (or copy the whole "
                "run folder first)")
        config = resumed_config({**state["config"], "out": str(folder)}, overrides)
        return cls(config, resume_state=state, **kw)

    def close(self) -> None:
        """Release the run folder (its lock); the trainer writes nothing afterwards."""
        if self.folder is not None:
            self.folder.release()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request_stop(self) -> None:
        """Interrupt after the current batch, saving a checkpoint (what Ctrl-C does):
        :meth:`fit` raises :class:`TrainingInterrupted`; the run can be resumed later."""
        self._stop.requested = True

    def stop(self, reason: str | None = None) -> None:
        """End training early after the current batch; :meth:`fit` returns normally.

        A checkpoint of that point is written (so the run can still be continued), and
        :attr:`stopped` records ``{"reason", "epoch", "batch"}`` (``epoch`` complete epochs,
        then ``batch`` batches of the next). Called from an
        ``"epoch_end"`` callback, the run ends after that epoch. ``reason`` defaults to
        ``"stopped by a callback"``.

        Raises
        ------
        TypeError
            ``reason`` is neither a string nor None.
        """
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"reason must be a string or None, got {type(reason).__name__}")
        self._finish = reason or "stopped by a callback"

    def fit(self) -> dict[str, Any]:
        """Train to ``config.epochs`` or until :meth:`stop`; return the last record (of a
        partial epoch, with ``"batches"``, when stopped mid-epoch).

        The run folder is released when ``fit`` returns or raises, unless
        :meth:`hold_folder` was called (a job that writes more files afterwards).

        Raises
        ------
        TrainingInterrupted
            A stop was requested; the checkpoint to resume from is attached.
        NonFiniteLossError
            The loss became NaN or infinite.
        DivergenceError
            The validation loss, a parameter or a batch-norm statistic became non-finite.
        RunFolderError
            The run folder was released already (by an earlier ``fit``).
        """
        if self.folder is not None and not self.folder.held:
            raise RunFolderError(f"this trainer released {str(self.run_dir)!r}; continue the "
                                 "run with Trainer.from_checkpoint(its last.pt)")
        self.stopped = None
        try:
            if self.context.is_main:
                write_json(self.run_dir / "config.json", self.run_record())
            with self._stop.installed():
                while self.epoch < self.config.epochs and self.stopped is None:
                    self._train_epoch()
                    if self.batch < len(self.train_loader):
                        return self._end_early()
                    self._end_epoch()
        finally:
            desynchronize_batchnorm(self.model)  # plain batch norms again: folding needs them
            self._plot()
            if not self._holding:
                self.close()
        return self.history[-1] if self.history else {}

    def hold_folder(self) -> None:
        """Keep the run folder claimed after :meth:`fit` returns, until :meth:`close`: for a
        job that writes the final files itself (:func:`.run.run_training`)."""
        self._holding = True

    def run_record(self) -> dict[str, Any]:
        """What ``config.json`` holds: the settings and, for a DiracNet, its ``architecture``
        (``dirac_torch.saving.architecture``: the spec with the data's channels and classes),
        enough to rebuild the model without the data (:func:`diracnets.load_run`)."""
        from dirac_torch.models import DiracNet
        from dirac_torch.saving import architecture

        record = self.config.to_dict()
        if isinstance(self.model, DiracNet):
            # a resumed run keeps the record it was trained under (an earlier release's
            # format too), so that load_run rebuilds it as it does the run before resuming
            record["architecture"] = (self._recorded[0] if self._recorded
                                      else architecture(self.model))
            # a model_factory's DiracNet need not be the network the settings describe
            record["model_from_config"] = self._model_from_config
        return record

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
            "run_id": self.folder.run_id if self.folder is not None else "",
        }

    # -- one epoch ---------------------------------------------------------------------------

    def _train_epoch(self) -> None:
        from tqdm.auto import tqdm

        lr = lr_at(self.config, self.epoch)
        if self.recipe.momentum_reset and self.batch == 0 and self.epoch > 0 \
                and lr != lr_at(self.config, self.epoch - 1):
            # the authors build a new SGD at each drop: no momentum carried over
            self.optimizer.state.clear()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        started = time.perf_counter()
        # a bar redraws itself with carriage returns: only a terminal shows that as intended
        bars = self.config.progress and self.context.is_main and sys.stderr.isatty()
        bar = tqdm(total=len(self.train_loader), initial=self.batch, unit="batch",
                   desc=f"epoch {self.epoch + 1}/{self.config.epochs}", leave=False,
                   disable=not bars, dynamic_ncols=True, file=sys.stderr)
        with bar:
            for images, labels in self.train_loader.batches(self.epoch, self.batch):
                outcome = self._step(images, labels, lr)
                bar.update()
                bar.set_postfix(loss=f"{self.meter.loss:.4f}", acc=f"{self.meter.accuracy:.3f}",
                                lr=f"{lr:.3g}")
                if outcome == "interrupt":
                    self._interrupt()
                if outcome == "finish":
                    break
        self._train_s = time.perf_counter() - started

    def _step(self, images: torch.Tensor, labels: torch.Tensor, lr: float) -> str | None:
        """One SGD step; returns ``"interrupt"`` or ``"finish"`` when any rank asked for
        that."""
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            logits = self.net(images)
            loss = F.cross_entropy(logits.float(), labels)
        stats = torch.stack([
            loss.detach().double() * labels.numel(),
            (logits.argmax(1) == labels).sum().double(),
            torch.tensor(labels.numel(), dtype=torch.float64, device=self.device),
            torch.tensor(float(self._stop.requested), dtype=torch.float64, device=self.device),
            torch.tensor(float(self._finish is not None), dtype=torch.float64,
                         device=self.device),
        ])
        loss_sum, correct, seen, stop, finish = distributed.all_reduce_sum(
            stats, self.context).tolist()
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
        # one process sees its callback's request at once; ranks agree at the next batch
        alone = not self.context.enabled
        if stop > 0 or (alone and self._stop.requested):
            return "interrupt"
        if finish > 0 or (alone and self._finish is not None):
            return "finish"
        return None

    def _record(self) -> dict[str, Any]:
        """The current epoch's record: training sums so far, a validation pass, the scales."""
        started = time.perf_counter()
        if self.config.precise_bn:
            recalibrate_batchnorm(self.model, self.train_loader.batches(self.epoch), self.context)
        val = self.evaluate()
        require_finite_loss(val.loss, "validation loss", self._diverged_when(self.epoch + 1))
        return {
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

    def _end_epoch(self) -> None:
        record = self._record()
        self.history.append(record)
        self.epoch, self.batch, self.meter = self.epoch + 1, 0, Meter()
        improved = record["val_acc"] > self.best_acc
        if improved:
            self.best_acc, self.best_epoch = record["val_acc"], record["epoch"]
        self._save(best=improved)
        if self.context.is_main:
            write_jsonl(self.run_dir / "metrics.jsonl", self.history)
            self._say(format_epoch(record, self.config.epochs))
        try:
            self._notify("epoch_end")
        except KeyboardInterrupt:
            self.request_stop()
        if self._any_rank(self._stop.requested) and self.epoch < self.config.epochs:
            self._interrupt(saved=True)
        if self._any_rank(self._finish is not None) and self.epoch < self.config.epochs:
            self._mark_stopped()

    def _end_early(self) -> dict[str, Any]:
        """Training left mid-epoch for :meth:`stop`: checkpoint this point, validate."""
        record = {**self._record(), "batches": self.batch}
        self._save(best=False)
        self._mark_stopped()
        return record

    def _mark_stopped(self) -> None:
        reason = self._finish or "stopped on another rank"
        self.stopped = {"reason": reason, "epoch": self.epoch, "batch": self.batch}
        where = (f"in epoch {self.epoch + 1}, after batch {self.batch}" if self.batch
                 else f"after epoch {self.epoch}")
        self._say(f"stopped early {where}: {reason}")

    def _say(self, line: str) -> None:
        if self._log is not None and self.context.is_main:
            self._log(line)

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

    def _diverged_when(self, epoch: int) -> str:
        """Where a divergence happened (1-based ``epoch``) and what is kept."""
        last = self.run_dir / "last.pt"
        kept = (f"the last good checkpoint {last} is kept" if last.exists()
                else "no checkpoint was written")
        return f"in epoch {epoch}; nothing was saved from it, {kept}"

    def _save(self, best: bool) -> None:
        # self.epoch counts finished epochs: it is the current one's 0-based index mid-epoch
        epoch = self.epoch + 1 if self.batch else self.epoch
        require_finite_model(self.model, self._diverged_when(epoch))  # every rank stops
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
        batches = len(self.train_loader)
        if not 0 <= state["batch"] < batches:
            raise CheckpointError(f"the checkpoint is at batch {state['batch']} of an epoch of "
                                  f"{batches} batches; it is not of this run's data and batch "
                                  "size, or was edited")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.epoch, self.batch = state["epoch"], state["batch"]
            self.meter = Meter(*state["meter"])
            self.best_acc, self.best_epoch = state["best_acc"], state["best_epoch"]
            self.history = list(state["history"])
            restore_rng_state(state["rng"])
        except (KeyError, IndexError, TypeError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"the checkpoint does not fit this model/optimizer: {exc}") from exc
        bad = non_finite_entries(self.model)
        if bad:
            raise CheckpointError(f"the checkpoint holds NaN or infinite values in {bad[:3]}; "
                                  "it cannot be resumed")

    def _claim(self, resume_state: dict[str, Any] | None, overwrite: bool,
               given: RunFolder | None) -> RunFolder | None:
        """The claimed run folder (rank 0 only: the other ranks write nothing)."""
        if given is not None:
            if resume_state is not None and resume_state.get("run_id") != given.run_id:
                raise RunFolderError(f"the checkpoint is not of the run in {str(given.path)!r}")
            return given
        if resume_state is None:
            return self._on_main(lambda: RunFolder.new(self.run_dir, overwrite=overwrite,
                                                       kind=self.kind))
        return self._on_main(lambda: RunFolder.reopen(self.run_dir, resume_state.get("run_id")))

    def _notify(self, event: str) -> None:
        for callback in self.callbacks:
            callback(event, self)


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One plain log line for an epoch's ``record`` (no carriage returns, no colours).

    Examples
    --------
    >>> print(format_epoch({"epoch": 3, "lr": 0.1, "train_loss": 0.51, "train_acc": 0.84,
    ...                     "val_loss": 0.42, "val_acc": 0.875, "train_s": 2.0,
    ...                     "eval_s": 0.25}, 15))
    epoch  3/15  train loss 0.5100 acc 84.00 %  val loss 0.4200 acc 87.50 %  lr 0.1  2.2 s
    """
    width = len(str(epochs))
    return (f"epoch {record['epoch']:>{width}}/{epochs}  train loss {record['train_loss']:.4f} "
            f"acc {100 * record['train_acc']:.2f} %  val loss {record['val_loss']:.4f} "
            f"acc {100 * record['val_acc']:.2f} %  lr {record['lr']:.3g}  "
            f"{record['train_s'] + record['eval_s']:.1f} s")


def _check_folder(run_dir: Path, resume_state: dict[str, Any] | None, overwrite: bool,
                  kind: str) -> None:
    """The run-folder rules, checked before any work (the claim itself comes later)."""
    if resume_state is None:
        check_new(run_dir, overwrite=overwrite, kind=kind)
    else:
        check_resume(run_dir, resume_state.get("run_id"))
