"""The training engine: epochs, validation, scheduling, clipping, accumulation,
mixed precision, checkpoints with the full training state, and exact resume."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import signal
import time
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from src.config import OPTIMIZER_TYPES, check_setting, default_of, shown
from src.data.labels import is_sentiment
from src.exceptions import CheckpointError, TrainingError, TrainingInterrupted
from src.models.lstm_model import LSTMConfig, check_vocabulary_fits, outputs_for
from src.training.checkpoint_manager import CheckpointManager, EarlyStopping, check_registry_state
from src.training.distributed import (any_rank, is_distributed, is_main_process, max_over_ranks, sum_over_ranks,
                                      world_size)
from src.training.epoch_log import EpochLog
from src.training.monitor import DEFAULT_MIN_DELTA, BestTracker
from src.training.adversarial import adversarial_perturbation, word_vector_rms
from src.training.virtual_adversarial import (UnlabeledBatches, direction_weights, prediction_divergence,
                                              rng_replayer)
from src.training.precision import MixedPrecision
from src.training.run_control import RunLock, StopSignals, TimeBudget, ensure_writable, remove_stale_temporaries
from src.training.schedulers import PlateauScheduler, create_scheduler, step_scheduler
from src.training.state import (EpochProgress, TrainingHistory, check_optimizer_state, load_optimizer_state,
                                load_rng_state_dict, rng_state_dict)
from src.utils.checkpoint_io import CHECKPOINT_FORMAT_VERSION, WEIGHTS_FORMAT_VERSIONS, load_state
from src.utils.device import resolve_device

logger = logging.getLogger(__name__)

MID_EPOCH_NAME = "checkpoint_mid_epoch.pt"


def interrupted(signum: int, where: str, path: Path) -> TrainingInterrupted:
    """The exception for a stop on a signal, its message naming the checkpoint that continues the run."""
    return TrainingInterrupted(f"stopped by {signal.Signals(signum).name} {where}; saved {path}; continue with "
                               f"--resume auto (or --resume {path})", signum, str(path))


class Trainer:
    """Trains a classifier whose batches are ``(token_ids, lengths, labels)``.

    ``monitor`` (``"val_loss"`` or ``"val_accuracy"``) and ``min_delta`` define the best
    epoch, in one ``BestTracker`` that early stopping, the best checkpoint and the
    plateau scheduler all read. ``adversarial_eps`` is 0 unless given: the Trainer takes
    any model, and adversarial training needs an LSTMClassifier-like ``embedding``
    (the pipeline passes ``TrainConfig``'s value, by default ``default_adversarial_eps``).
    """

    def __init__(self, model: nn.Module, train_loader: DataLoader, val_loader: DataLoader,
                 optimizer: torch.optim.Optimizer, criterion: nn.Module, scheduler: Any = None,
                 gradient_clip: Optional[float] = default_of("gradient_clip"),
                 checkpoint_dir: Union[str, Path] = default_of("checkpoint_dir"),
                 device: Optional[Union[str, torch.device]] = None,
                 accumulation_steps: int = default_of("accumulation_steps"), use_amp: bool = False,
                 max_checkpoints: int = default_of("max_checkpoints"), save_best_n: int = default_of("save_best_n"),
                 monitor: str = default_of("monitor"), min_delta: float = DEFAULT_MIN_DELTA,
                 preprocessor: Any = None, progress: bool = True, run_config: Optional[Dict[str, Any]] = None,
                 save_every_steps: Optional[int] = None, detect_anomaly: bool = False,
                 tensorboard_dir: Optional[Union[str, Path]] = None,
                 adversarial_eps: float = 0.0, precision: str = default_of("precision"),
                 vat_eps: float = default_of("vat_eps"), unlabeled: Optional[UnlabeledBatches] = None,
                 gradual_unfreezing: bool = default_of("gradual_unfreezing"),
                 label_smoothing: float = default_of("label_smoothing"),
                 restore_best_on_plateau: bool = default_of("restore_best_on_plateau"),
                 max_minutes: Optional[float] = default_of("max_minutes"), run_started: Optional[float] = None):
        self.adversarial_eps = check_setting("adversarial_eps", adversarial_eps, "adversarial_eps")
        # ULMFiT: epoch k trains only the top k stages (the classifier, then each LSTM layer down, the embedding last)
        self.stages = model_stages(model) if check_setting("gradual_unfreezing", gradual_unfreezing,
                                                             "gradual_unfreezing") else None
        self.vat_eps = check_setting("vat_eps", vat_eps, "vat_eps")
        self.unlabeled = unlabeled if self.vat_eps else None
        if self.vat_eps and unlabeled is None:
            raise ValueError("vat_eps needs unlabeled reviews: pass unlabeled=UnlabeledBatches(encoded reviews, "
                             "batch size, seed)")
        for name in ("adversarial_eps", "vat_eps"):
            if getattr(self, name) and not isinstance(getattr(model, "embedding", None), nn.Embedding):
                raise ValueError(f"{name} needs a model with an `embedding` (nn.Embedding) whose forward "
                                 "takes embedding_shift, such as LSTMClassifier")
        _check_model_fits_data(model, criterion, preprocessor, (train_loader, val_loader))
        self.accumulation_steps = check_setting("accumulation_steps", accumulation_steps, "accumulation_steps")
        self.save_every_steps = check_setting("save_every_steps", save_every_steps, "save_every_steps")
        clip = check_setting("gradient_clip", gradient_clip, "gradient_clip") if gradient_clip is not None else None
        self.gradient_clip = clip or None  # 0 and None turn clipping off
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.is_main = is_main_process()
        self._forward = self._wrap_distributed(self.model)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.optimizer, self.criterion, self.scheduler = optimizer, criterion, scheduler
        # training's loss; validation, and so the best epoch, read the plain ``criterion``
        self.train_criterion = label_smoothed(criterion, check_setting("label_smoothing", label_smoothing,
                                                                       "label_smoothing"))
        self.restore_best_on_plateau = check_setting("restore_best_on_plateau", restore_best_on_plateau,
                                                     "restore_best_on_plateau")
        if self.restore_best_on_plateau and not isinstance(scheduler, PlateauScheduler):
            raise ValueError("restore_best_on_plateau acts when the plateau schedule lowers the learning rate: "
                             "use scheduler_type='plateau'")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.checkpoint_manager = CheckpointManager(checkpoint_dir, max_checkpoints, save_best_n)
        self.monitor = self.checkpoint_manager.monitor = check_setting("monitor", monitor, "monitor")
        self.best = BestTracker(self.monitor, min_delta=min_delta)
        self.preprocessor, self.progress, self.run_config = preprocessor, progress, run_config or {}
        self.early_stopping: Optional[EarlyStopping] = None
        self.epoch = 0  # epochs completed
        self.global_step = 0
        self.history = TrainingHistory()
        self.detect_anomaly = detect_anomaly
        self._progress: Optional[EpochProgress] = None  # a partly trained epoch (from a mid-epoch checkpoint)
        self._pending_rng: Optional[Dict[str, Any]] = None
        self._signals: Optional[StopSignals] = None
        self.epoch_log = EpochLog(self.checkpoint_dir, Path(tensorboard_dir) if tensorboard_dir is not None else None)
        self.precision = MixedPrecision(self.device, use_amp, precision)
        # --max-minutes; ``run_started`` (a time.perf_counter() value) lets work before training count
        self.time_budget = TimeBudget(check_setting("max_minutes", max_minutes, "max_minutes"), run_started)
        self._last_epoch_seconds: Optional[float] = None  # train + validation of the last epoch in this process

    # -- set-up -----------------------------------------------------------------
    def _wrap_distributed(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel under torchrun (gradients averaged over ranks), else the model."""
        if not is_distributed():
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    # -- one epoch ----------------------------------------------------------------
    def _loss_and_correct(self, logits: torch.Tensor, labels: torch.Tensor, criterion: Optional[nn.Module] = None):
        """``(criterion's loss, correct predictions)``; ``criterion`` defaults to the plain one, validation's."""
        criterion = self.criterion if criterion is None else criterion
        if logits.dim() == 1:
            loss = criterion(logits.float(), labels)
            correct = ((logits > 0) == (labels > 0.5)).sum()  # soft targets (--ngram-teacher) keep the label's side
        else:
            targets = labels.long()
            loss = criterion(logits.float(), targets)
            correct = (logits.argmax(dim=1) == targets).sum()
        return loss, correct

    def _batch_to_device(self, batch):
        ids, lengths, labels = batch
        blocking = self.device.type == "cuda"
        return (ids.to(self.device, non_blocking=blocking), lengths.to(self.device, non_blocking=blocking),
                labels.to(self.device, non_blocking=blocking))

    def _frozen_parameters(self) -> List[nn.Parameter]:
        """The parameters gradual unfreezing keeps still in the current epoch (``self.epoch + 1``)."""
        if self.stages is None:
            return []
        return [p for stage in self.stages[self.epoch + 1:] for p in stage.parameters()]

    def _optimizer_step(self) -> Optional[float]:
        for parameter in self._frozen_parameters():  # no gradient: the optimizer leaves it as it is
            parameter.grad = None
        self.precision.unscale(self.optimizer)
        norm = None
        if self.gradient_clip is not None:
            params = [p for p in self.model.parameters() if p.grad is not None]
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.gradient_clip))
        self.precision.step(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        if getattr(self.scheduler, "per_step", False):
            self.scheduler.step_batch()
        return norm

    def train_epoch(self) -> Dict[str, float]:
        """One pass over the training data; returns loss, accuracy, grad_norm, tokens_per_second.

        After a mid-epoch checkpoint was loaded, the epoch continues after the batches
        already done, with their running totals.
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        progress = self._take_progress()
        started = time.perf_counter() - progress.seconds
        total = len(self.train_loader)
        iterator = iter(self._batches_after(progress.batches_done))  # draws a DataLoader seed from the RNG
        if self._pending_rng is not None:  # mid-epoch resume: that draw happened before the checkpoint
            load_rng_state_dict(self._pending_rng)
            self._pending_rng = None
        batches = tqdm(iterator, desc=f"epoch {self.epoch + 1}", leave=False, disable=not (self.progress and self.is_main),
                       unit="batch", total=total, initial=progress.batches_done)
        for step, batch in enumerate(batches, start=progress.batches_done + 1):
            ids, lengths, labels = self._batch_to_device(batch)
            boundary = step % self.accumulation_steps == 0 or step == total
            group_start = (step - 1) // self.accumulation_steps * self.accumulation_steps
            group_size = min(self.accumulation_steps, total - group_start)  # the last group may be shorter
            loss_value, batch_correct, norm = self.train_step(ids, lengths, labels, step, boundary, group_size)
            progress.add(step, loss_value, float(batch_correct), labels.numel(), float(lengths.sum()), norm)
            if step % 10 == 0 or step == total:
                running = progress.running()
                rate = progress.seen / max(time.perf_counter() - started, 1e-9)
                batches.set_postfix(loss=f"{running['loss']:.4f}", acc=f"{running['accuracy']:.3f}",
                                    reviews_s=f"{rate:.0f}")
            if boundary and step < total:
                progress.seconds = time.perf_counter() - started
                self._mid_epoch_checkpoint(progress)
        return progress.summary(max(time.perf_counter() - started, 1e-9), self.device)

    def _take_progress(self) -> EpochProgress:
        progress, self._progress = self._progress, None
        if progress is not None and progress.epoch == self.epoch + 1:
            return progress
        return EpochProgress(epoch=self.epoch + 1)

    def _batches_after(self, done: int):
        """The training batches of this epoch, without the first ``done`` ones."""
        if done == 0:
            return self.train_loader
        sampler = getattr(self.train_loader, "batch_sampler", None)
        if hasattr(sampler, "skip_next"):
            sampler.skip_next(done)
            return self.train_loader
        return itertools.islice(self.train_loader, done, None)

    def _mid_epoch_checkpoint(self, progress: EpochProgress) -> None:
        """Write the mid-epoch checkpoint when a signal asked to stop or ``save_every_steps`` is due."""
        stop = self._agreed_signal()
        due = self.save_every_steps is not None and self.global_step % self.save_every_steps == 0
        if stop is None and not due:
            return
        self._progress = progress.over_all_ranks(self.device)
        try:
            self._write(lambda: self.checkpoint_manager.write(MID_EPOCH_NAME, self.state_dict()),
                        f"epoch {progress.epoch}, step {progress.batches_done}")
        finally:
            self._progress = None
        if stop is not None:
            where = f"in epoch {progress.epoch} after {progress.batches_done} of {len(self.train_loader)} batches"
            raise interrupted(stop, where, self.checkpoint_dir / MID_EPOCH_NAME)

    def _agreed_signal(self) -> Optional[int]:
        """The stop signal any rank received (one rank's Ctrl-C stops all of them together)."""
        local = self._signals.requested if self._signals is not None else None
        agreed = max_over_ranks(local or 0, self.device)
        return agreed or None

    def _write(self, save, what: str):
        """Run a checkpoint write on rank 0; a failure keeps the earlier files and says so."""
        if not self.is_main:
            return None
        try:
            return save()
        except (OSError, RuntimeError) as err:  # torch reports a short write as RuntimeError
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
            raise TrainingError(f"could not write the checkpoint of {what} to {self.checkpoint_dir} "
                                f"({reason}); the earlier checkpoints are kept. Free some space or "
                                "choose another --checkpoint-dir, then continue with --resume auto") from None

    def train_step(self, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, step: int = 1,
                   optimizer_step: bool = True, group_size: Optional[int] = None):
        """Forward and backward on one batch; with ``optimizer_step``, also clip and update.

        The loss is divided by ``group_size``, the number of batches whose gradients
        are summed before the update (``accumulation_steps`` unless the epoch ends first).

        Returns ``(loss, correct predictions, gradient norm or None)``.
        """
        divisor = group_size or self.accumulation_steps
        shift = None
        if self.adversarial_eps:  # a zero shift of the embedded words, to read the loss gradient w.r.t. them
            shift = torch.zeros(*ids.shape, self.model.embedding.embedding_dim, device=ids.device,
                                requires_grad=True)  # [B, T, E]
        loss, loss_value, batch_correct = self._loss_on(ids, lengths, labels, step, shift)
        self.precision.backward(loss / divisor)
        if shift is not None:
            perturbation = adversarial_perturbation(  # [B, T, E], along the gradient the backward pass left
                shift.grad, self.adversarial_eps * word_vector_rms(self.model.embedding))
            adversarial_loss, _, _ = self._loss_on(ids, lengths, labels, step, perturbation)
            self.precision.backward(adversarial_loss / divisor)
        if self.unlabeled is not None:
            self.precision.backward(self._virtual_adversarial_loss(ids.size(1), step) / divisor)
        norm = self._optimizer_step() if optimizer_step else None
        return loss_value, batch_correct, norm

    def _loss_on(self, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, step: int,
                 embedding_shift: Optional[torch.Tensor] = None):
        """Forward pass: ``(loss, its value, correct predictions)``, stopping on a non-finite loss; the shift
        goes to the embedded words."""
        with self.precision.autocast():
            if embedding_shift is None:
                logits = self._forward(ids, lengths)
            else:
                logits = self._forward(ids, lengths, embedding_shift=embedding_shift)
        loss, batch_correct = self._loss_and_correct(logits, labels, self.train_criterion)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            self._fail_non_finite(f"the training loss became {loss_value} at epoch {self.epoch + 1}, step {step}")
        return loss, loss_value, batch_correct

    def _virtual_adversarial_loss(self, length: int, step: int) -> torch.Tensor:
        """The divergence of the prediction on this step's unlabeled batch when its embedded words move
        ``vat_eps`` word vectors along the direction that changes it most (virtual_adversarial.py)."""
        ids, lengths = (t.to(self.device) for t in self.unlabeled.batch(self.epoch + 1, step, length))
        shift = torch.zeros(*ids.shape, self.model.embedding.embedding_dim, device=self.device,
                            requires_grad=True)  # [B, T, E]
        replay = rng_replayer(self.device)  # both passes draw the same dropout masks
        with self.precision.autocast():  # the model itself: a pass that leaves no weight gradient
            clean = self.model(ids, lengths, embedding_shift=shift)
        (gradient,) = torch.autograd.grad((clean * direction_weights(clean)).sum(), shift)
        perturbation = adversarial_perturbation(gradient, self.vat_eps * word_vector_rms(self.model.embedding))
        replay()
        with self.precision.autocast():
            loss = prediction_divergence(clean, self._forward(ids, lengths, embedding_shift=perturbation))
        if not math.isfinite(float(loss.detach())):
            self._fail_non_finite(f"the virtual adversarial loss became {float(loss.detach())} at epoch "
                                  f"{self.epoch + 1}, step {step}")
        return loss

    def _fail_non_finite(self, what: str) -> None:
        latest = self.checkpoint_manager.latest_checkpoint()
        where = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
        raise TrainingError(
            f"{what}; training stopped and nothing was saved over the best model ({where}); "
            "lower --learning-rate or keep --gradient-clip on"
        )

    def monitored_value(self, val_metrics: Dict[str, float]) -> float:
        """The number of ``evaluate_model``'s result that ``monitor`` (val_loss or val_accuracy) reads."""
        return val_metrics[self.monitor[len("val_"):]]

    @torch.no_grad()
    def evaluate_model(self, data_loader: DataLoader) -> Dict[str, float]:
        """Loss and accuracy over ``data_loader`` (no gradient, dropout off)."""
        self.model.eval()
        loss_sum = correct = seen = 0.0
        for batch in data_loader:
            ids, lengths, labels = self._batch_to_device(batch)
            with self.precision.evaluation_autocast():
                logits = self.model(ids, lengths)
            loss, batch_correct = self._loss_and_correct(logits, labels)
            loss_sum += float(loss) * labels.numel()
            correct += float(batch_correct)
            seen += labels.numel()
        if getattr(getattr(data_loader, "batch_sampler", None), "num_replicas", 1) > 1:  # a shard per rank
            loss_sum, correct, seen = sum_over_ranks([loss_sum, correct, seen], self.device)
        if seen == 0:
            raise TrainingError("the evaluation data is empty; check the validation split")
        return {"loss": loss_sum / seen, "accuracy": correct / seen, "n_examples": int(seen)}

    # -- the loop -------------------------------------------------------------------
    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train(self, epochs: int, early_stopping_patience: Optional[int] = None, save_best: bool = True,
              save_every: Optional[int] = None) -> Dict[str, Any]:
        """Train ``epochs`` more epochs; returns the history dict.

        A checkpoint is written every ``save_every`` epochs (every epoch when None),
        at every new best (``save_best``), and at the last epoch. When early stopping
        is on and keeps the best weights, the model ends with the best weights.
        """
        check_setting("epochs", epochs, "epochs")
        check_setting("save_every", save_every, "save_every")
        self._prepare_early_stopping(early_stopping_patience)
        if self.is_main:
            ensure_writable(self.checkpoint_dir)
        lock = RunLock(self.checkpoint_dir) if self.is_main else contextlib.nullcontext()
        with lock, StopSignals() as signals, torch.autograd.set_detect_anomaly(self.detect_anomaly):
            if self.is_main:
                remove_stale_temporaries(self.checkpoint_dir)
            self._signals = signals
            try:
                self._train_epochs(epochs, save_best, save_every)
            except torch.cuda.OutOfMemoryError:
                raise TrainingError("the GPU ran out of memory; use a smaller --batch-size (with "
                                    "--accumulation-steps to keep the effective batch), a smaller --max-length, "
                                    "or --amp") from None
            finally:
                self._signals = None
                self.epoch_log.close()
        if self.early_stopping is not None and self.early_stopping.restore_best(self.model):
            logger.info("restored the weights of the best epoch (%s)", self.early_stopping.best_epoch)
        return self.history

    def _train_epochs(self, epochs: int, save_best: bool, save_every: Optional[int]) -> None:
        if self.epoch == 0 and self._progress is None and self.is_main:
            self._forget_earlier_run()
        if self.is_main:
            self.epoch_log.keep_until(self.epoch)
        last_epoch = self.epoch + epochs
        logger.info("training epochs %d to %d: %d batches per epoch on %s in %s", self.epoch + 1, last_epoch,
                    len(self.train_loader), self.device, self.precision.name)
        self.history["stopped_early"] = self.history["time_limit_reached"] = False
        self._fit_schedule_to_time(self.epoch)
        if self._out_of_time():  # a resumed run whose time is spent
            return
        while self.epoch < last_epoch:
            if self._run_epoch(last_epoch, save_best, save_every):
                self.history["stopped_early"] = True
                break

    def _out_of_time(self) -> bool:
        """Whether the next epoch would end past ``--max-minutes`` (estimated from the last epoch; the
        first epoch of a fresh run always runs); if so, the history says so. Every rank stops if one is
        out of time."""
        estimate = self._last_epoch_seconds or self.history.last("epoch_times")
        out = estimate is not None and not self.time_budget.allows(estimate)
        if not any_rank(out, self.device):
            return False
        logger.warning("stopping before epoch %d: it would end after the time limit of %.1f minutes (%.1f spent, "
                       "an epoch takes about %.1f); best_model.pt holds the best epoch so far", self.epoch + 1,
                       self.time_budget.seconds / 60, self.time_budget.spent() / 60, estimate / 60)
        self.history["stopped_early"] = self.history["time_limit_reached"] = True
        return True

    def _fit_schedule_to_time(self, epoch: int) -> None:
        """A schedule with a length (cosine) ends with the last epoch the time limit is estimated to leave
        room for after ``epoch`` (as ``_out_of_time`` estimates it), or at its planned length if that comes
        first or there is no limit. Done after every epoch and when training starts, so a run resumed
        with another limit or more epochs gets a course that fits them. Every rank takes the fewest
        epochs any rank estimates."""
        if not hasattr(self.scheduler, "fit_length"):
            return
        estimate = self._last_epoch_seconds or self.history.last("epoch_times")
        left = self.time_budget.epochs_left(estimate) if estimate else None
        planned = self.scheduler.planned
        fitted = planned if left is None else min(planned, epoch - max_over_ranks(-left, self.device))
        self.scheduler.fit_length(max(1, fitted))

    def _forget_earlier_run(self) -> None:
        """A fresh run in a used folder: its registry and mid-epoch file must not be resumed from."""
        if self.checkpoint_manager.entries:
            logger.warning("%s holds checkpoints of an earlier run; this run's registry replaces it",
                           self.checkpoint_dir)
            self.checkpoint_manager.entries, self.checkpoint_manager.best_path = [], None
        (self.checkpoint_dir / MID_EPOCH_NAME).unlink(missing_ok=True)

    def _prepare_early_stopping(self, patience: Optional[int]) -> None:
        """Early stopping with ``patience`` (None: as it is); a resumed run keeps its record and best weights."""
        if patience is None:
            if self.restore_best_on_plateau and self.early_stopping is None:
                raise ValueError("restore_best_on_plateau goes back to the best weights that early stopping keeps: "
                                 "give early_stopping_patience")
            return
        if self.early_stopping is None:
            self.early_stopping = EarlyStopping(patience=patience, tracker=self.best)
        else:
            self.early_stopping.patience = check_setting("early_stopping_patience", patience, "patience")

    def _set_sampler_epoch(self, epoch: int) -> None:
        sampler = getattr(self.train_loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def _run_epoch(self, last_epoch: int, save_best: bool, save_every: Optional[int]) -> bool:
        """Train and validate one epoch, record it, save what is due; True means stop."""
        epoch = self.epoch + 1
        self._set_sampler_epoch(epoch)
        self._back_to_best_if_lowered(epoch)
        lr = self.current_lr()
        train_metrics = self.train_epoch()
        validation_started = time.perf_counter()
        val_metrics = self.evaluate_model(self.val_loader)
        if not math.isfinite(val_metrics["loss"]):  # the last update left weights that are not numbers
            self._fail_non_finite(f"the validation loss became {val_metrics['loss']} after epoch {epoch}")
        # the whole epoch, with its part before a mid-epoch resume: the time limit's estimate of the next one
        self._last_epoch_seconds = train_metrics["seconds"] + time.perf_counter() - validation_started
        improved = self.best.update(self.monitored_value(val_metrics), epoch)
        self._fit_schedule_to_time(epoch)
        step_scheduler(self.scheduler, improved, val_metrics)
        self.epoch = epoch
        self.history.record(epoch, lr, train_metrics, val_metrics, self.best.best_epoch, self._last_epoch_seconds)
        stop = self.early_stopping is not None and self.early_stopping.after_epoch(improved, self.model, epoch)
        self._log_epoch(epoch, last_epoch, lr, train_metrics, val_metrics, improved)
        stop = stop or (epoch < last_epoch and self._out_of_time())  # either way, this epoch's checkpoint is due
        signalled = self._agreed_signal()
        due = save_every is None or epoch % save_every == 0 or epoch == last_epoch or stop or signalled
        if due or (save_best and improved):
            self._write(lambda: self.checkpoint_manager.save_checkpoint(
                self.model, self.optimizer, epoch, train_metrics["loss"], val_metrics["loss"],
                val_metrics["accuracy"], is_best=save_best and improved, state=self.state_dict()),
                f"epoch {epoch}")
            if self.is_main:
                (self.checkpoint_dir / MID_EPOCH_NAME).unlink(missing_ok=True)  # superseded
            if signalled is not None and epoch < last_epoch and not stop:
                raise interrupted(signalled, f"after epoch {epoch}", self.checkpoint_manager.checkpoint_path(epoch))
        return stop

    def _back_to_best_if_lowered(self, epoch: int) -> None:
        """With ``restore_best_on_plateau``, an epoch after the plateau schedule lowered the rate starts from the
        best epoch's weights (early stopping's copy); the optimizer's moments carry on. Not when the epoch
        continues from a mid-epoch checkpoint: its start was restored before that checkpoint was written."""
        if not (self.restore_best_on_plateau and self.scheduler.lowered and self._progress is None):
            return
        if self.early_stopping.restore_best(self.model):
            logger.info("the learning rate was lowered: epoch %d starts from the weights of epoch %s, the best",
                        epoch, self.early_stopping.best_epoch)

    def _log_epoch(self, epoch, last_epoch, lr, train_metrics, val_metrics, improved) -> None:
        line = {"epoch": epoch, "train_loss": train_metrics["loss"], "train_accuracy": train_metrics["accuracy"],
                "val_loss": val_metrics["loss"], "val_accuracy": val_metrics["accuracy"], "learning_rate": lr,
                "grad_norm": train_metrics["grad_norm"], "tokens_per_second": train_metrics["tokens_per_second"],
                "seconds": train_metrics["seconds"], "best": improved}
        logger.info("epoch %d/%d  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  lr %.2e  %.1fs  %.0f tok/s%s",
                    epoch, last_epoch, line["train_loss"], 100 * line["train_accuracy"], line["val_loss"],
                    100 * line["val_accuracy"], lr, line["seconds"], line["tokens_per_second"],
                    "  (best)" if improved else "")
        self._write(lambda: self.epoch_log.write(line), f"the epoch {epoch} metrics")

    # -- state ------------------------------------------------------------------------
    def _model_config(self) -> Optional[Dict[str, Any]]:
        config = getattr(self.model, "config", None)
        return asdict(config) if is_dataclass(config) else None

    def _stateful_parts(self) -> Dict[str, Any]:
        """The helpers whose ``state_dict()`` goes into a checkpoint, by name (None: absent)."""
        sampler = getattr(self.train_loader, "batch_sampler", None)
        return {"optimizer_state": self.optimizer, "scheduler_state": self.scheduler, "scaler_state": self.precision,
                "best_tracker": self.best, "early_stopping": self.early_stopping,
                "checkpoint_manager": self.checkpoint_manager, "history": self.history, "time_budget": self.time_budget,
                "sampler": sampler if hasattr(sampler, "state_dict") else None}

    def state_dict(self, metrics: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Everything ``load_checkpoint`` needs to continue exactly where training is now."""
        state = {name: part.state_dict() if part is not None else None for name, part in self._stateful_parts().items()}
        state.update(
            epoch=self.epoch, global_step=self.global_step, model_config=self._model_config(),
            model_state=self.model.state_dict(), rng=rng_state_dict(),
            preprocessor=self.preprocessor.to_dict() if self.preprocessor is not None else None,
            scheduler_class=type(self.scheduler).__name__ if self.scheduler is not None else None,
            run_config=dict(self.run_config), metrics=metrics or {},
            epoch_progress=self._progress.state_dict() if self._progress is not None else None)
        return state

    def save_checkpoint(self, filename: str, is_best: bool = False,
                        metrics: Optional[Dict[str, Any]] = None) -> Path:
        """Write the full training state to ``checkpoint_dir/filename`` (and ``best_model.pt`` if best)."""
        return self.checkpoint_manager.write(filename, self.state_dict(metrics), is_best)

    def load_checkpoint(self, path: Union[str, Path], load_optimizer: bool = True) -> Dict[str, Any]:
        """Restore the model (and, with ``load_optimizer``, everything else) from a checkpoint.

        The weights alone load from checkpoints of earlier format versions too."""
        versions = (CHECKPOINT_FORMAT_VERSION,) if load_optimizer else WEIGHTS_FORMAT_VERSIONS
        state = load_state(path, map_location=self.device, versions=versions)
        self._restore(state, path, everything=load_optimizer)
        logger.info("loaded checkpoint %s (epoch %s)", path, state.get("epoch"))
        return {"epoch": state.get("epoch"), "metrics": state.get("metrics", {}), "history": state.get("history")}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the whole training state, model included, from ``state_dict()``'s output
        (a loaded checkpoint)."""
        self._restore(state, state.get("path", "state"), everything=True)

    def _restore(self, state: Dict[str, Any], where: Any, everything: bool) -> None:
        self._check_model_config(state.get("model_config"), where)
        saved = state.get("preprocessor")
        saved_words = saved.get("itos") if isinstance(saved, dict) else None
        if saved_words is not None and self.preprocessor is not None and saved_words != self.preprocessor.itos:
            raise CheckpointError(f"checkpoint {where} was trained with another vocabulary than this trainer's "
                                  "preprocessor; pass TextPreprocessor.from_dict(checkpoint['preprocessor'])")
        try:
            if everything:
                self._check_training_state(state)
            if isinstance(getattr(self.model, "config", None), LSTMConfig):  # finite floating-point weights, too
                self.model.config.check_weights(state["model_state"])
            self.model.load_state_dict(state["model_state"])
            if everything:
                self._restore_training(state)
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as err:
            reason = str(err).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint {where} does not fit this trainer ({reason})") from None

    def _check_model_config(self, saved: Optional[Dict[str, Any]], where: Any) -> None:
        """Refuse a checkpoint of another model; a setting newer than the checkpoint counts as its default."""
        current = self._model_config()
        if saved is None or current is None:
            return
        defaults = {f.name: f.default for f in fields(self.model.config) if f.default is not MISSING}
        saved = {**{k: v for k, v in defaults.items() if k in current}, **saved}
        if saved == current:
            return
        different = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs model {current.get(k)!r}" for k in different)
        raise CheckpointError(f"checkpoint {where} was saved from a different model ({details}); "
                              "rebuild it with LSTMClassifier.from_config(checkpoint['model_config'])")

    def _check_training_state(self, state: Dict[str, Any]) -> None:
        """Refuse, before anything is loaded, a training state whose parts do not hold together or fit this
        trainer: another kind of schedule, counters unlike the history, a best epoch the run never had,
        optimizer buffers unlike their parameters, registry names outside the checkpoint folder."""
        saved_scheduler, scheduler = state.get("scheduler_class"), type(self.scheduler).__name__
        if saved_scheduler is not None and self.scheduler is not None and saved_scheduler != scheduler:
            # torch's schedulers take any state without a word: a cosine schedule's would become a StepLR's
            raise ValueError(f"its learning-rate schedule is a {saved_scheduler}, this trainer's a {scheduler}; "
                             "build the trainer with the same scheduler")
        epoch, _ = _count(state, "epoch"), _count(state, "global_step")
        if state.get("history") is not None:
            history = TrainingHistory()
            history.load_state_dict(state["history"])
            if history["epochs_completed"] != epoch:
                raise ValueError(f"its epoch ({epoch}) and its history ({history['epochs_completed']} epochs) "
                                 "disagree")
        best = (state.get("best_tracker") or {}).get("best_epoch")
        if best is not None and not (type(best) is int and 1 <= best <= epoch):
            raise ValueError(f"its best epoch ({shown(best)}) is not one of its {epoch} epochs")
        if state.get("optimizer_state") is not None:
            check_optimizer_state(self.optimizer, state["optimizer_state"])
        if state.get("checkpoint_manager") is not None:
            check_registry_state(state["checkpoint_manager"])

    def _restore_training(self, state: Dict[str, Any]) -> None:
        """Everything but the weights (checked by ``_check_training_state``): the parts' states, counters,
        epoch progress and random state."""
        if state.get("early_stopping") is not None and self.early_stopping is None:
            self.early_stopping = EarlyStopping(patience=state["early_stopping"]["patience"], tracker=self.best)
        for name, part in self._stateful_parts().items():
            if part is not None and state.get(name) is not None:
                try:
                    if part is self.optimizer:
                        load_optimizer_state(part, state[name])
                    else:
                        part.load_state_dict(state[name])
                except (KeyError, TypeError, ValueError) as err:
                    raise ValueError(f"its {name} does not fit this trainer's {type(part).__name__}: {err}") from None
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self._progress = self._resumed_progress(state.get("epoch_progress"))
        load_rng_state_dict(state["rng"])
        self._pending_rng = state["rng"] if self._progress is not None else None

    def _resumed_progress(self, saved: Optional[Dict[str, Any]]) -> Optional[EpochProgress]:
        """The interrupted epoch's progress, if this run can continue it (same number of processes)."""
        if saved is None:
            return None
        progress = EpochProgress.from_state_dict(saved)
        if progress.world_size != world_size():
            logger.warning("the checkpoint was written by %s processes, this run has %d: epoch %d starts again "
                           "from its beginning", progress.world_size, world_size(), progress.epoch)
            return None
        return progress if self.is_main else progress.without_totals()

    def resume_training(self, checkpoint_path: Union[str, Path], additional_epochs: int,
                        save_best: bool = True, save_every: Optional[int] = None) -> Dict[str, Any]:
        """Load a checkpoint and train ``additional_epochs`` more, with early stopping as it was."""
        self.load_checkpoint(checkpoint_path, load_optimizer=True)
        patience = self.early_stopping.patience if self.early_stopping is not None else None
        return self.train(additional_epochs, early_stopping_patience=patience, save_best=save_best,
                          save_every=save_every)

    def get_training_summary(self) -> Dict[str, Any]:
        """Status, best and final metrics, and model size, in one dict."""
        history = self.history
        last = history.last
        return {
            "training_status": {
                "epochs_completed": history["epochs_completed"], "best_epoch": history["best_epoch"],
                "stopped_early": history["stopped_early"], "total_time": history["total_time"],
                "time_limit_reached": history["time_limit_reached"],
                "global_step": self.global_step, "monitor": self.monitor,
            },
            "performance_metrics": {
                "best_val_accuracy": history["best_val_accuracy"], "best_val_loss": history["best_val_loss"],
                "final_train_loss": last("train_losses"), "final_val_loss": last("val_losses"),
                "final_train_accuracy": last("train_accuracies"), "final_val_accuracy": last("val_accuracies"),
                "final_learning_rate": last("learning_rates"),
            },
            "model_info": {
                "total_parameters": sum(p.numel() for p in self.model.parameters()),
                "trainable_parameters": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
                "model_config": self._model_config(), "device": str(self.device),
                "mixed_precision": str(self.precision.dtype) if self.precision.dtype is not None else None,
            },
        }


def _count(state: Dict[str, Any], key: str) -> int:
    value = state[key]
    if not (type(value) is int and value >= 0):
        raise ValueError(f"its {key} must be a whole number of at least 0, not {shown(value)}")
    return value


OPTIMIZERS = dict(zip(OPTIMIZER_TYPES, (torch.optim.Adam, torch.optim.AdamW)))


def build_optimizer(optimizer_class: type, params: Iterable[Any], device: Union[str, torch.device],
                    **options: Any) -> torch.optim.Optimizer:
    """``optimizer_class(params, **options)``; on the CPU, Adam and AdamW take their fused kernel, which
    updates every parameter in one pass: 7x faster than their default loop there, which took 5% of the
    default model's training step (bench/optimizer_step.py). torch before 2.4 has no fused CPU kernel and
    keeps the loop; CUDA keeps torch's own choice."""
    params = list(params)
    if torch.device(device).type == "cpu" and optimizer_class in (torch.optim.Adam, torch.optim.AdamW):
        try:
            return optimizer_class(params, fused=True, **options)
        except RuntimeError:
            pass
    return optimizer_class(params, **options)


def _check_model_fits_data(model: nn.Module, criterion: nn.Module, preprocessor: Any,
                           loaders: Sequence[DataLoader]) -> None:
    """Refuse, before anything trains, an LSTMClassifier (a model with an ``LSTMConfig``) that does not fit its
    vocabulary, loss or data's classes: each would train without a word to a meaningless model."""
    config = getattr(model, "config", None)
    if not isinstance(config, LSTMConfig):
        return
    if preprocessor is not None:
        check_vocabulary_fits(preprocessor.vocab_size, config.vocab_size)
    _check_criterion(config.output_dim, criterion)
    for loader in loaders:
        names = getattr(getattr(loader, "dataset", None), "class_names", None)
        if names is not None:
            _check_classes(config, tuple(map(str, names)))


def _check_criterion(output_dim: int, criterion: nn.Module) -> None:
    name = type(criterion).__name__
    if output_dim == 1 and isinstance(criterion, (nn.CrossEntropyLoss, nn.NLLLoss)):
        raise ValueError(f"{name} needs one output per class but the model has one; use nn.BCEWithLogitsLoss, "
                         "or build the model with output_dim=2")
    if output_dim > 1 and isinstance(criterion, (nn.BCEWithLogitsLoss, nn.BCELoss)):
        raise ValueError(f"{name} needs one output but the model has {output_dim}; use nn.CrossEntropyLoss")


def _check_classes(config: LSTMConfig, names: Tuple[str, ...]) -> None:
    """The model's outputs fit the classes (one per class, or one for two) and, where the model names its classes,
    carry the data's names in their order, so that a saved model labels its predictions as the data did (an
    unnamed binary model calls the second class positive, as IMDB's 0 and 1)."""
    needed = outputs_for(len(names))
    if config.output_dim not in (needed, len(names)):
        raise ValueError(f"the data have {len(names)} classes ({', '.join(names)}) but the model has "
                         f"{config.output_dim} output(s); build it with output_dim={needed} and "
                         "class_names=train_loader.dataset.class_names")
    if config.class_names is not None and tuple(config.class_names) != names:
        raise ValueError(f"the model's classes are {', '.join(config.class_names)} but the data's "
                         f"{', '.join(names)}, in the order of its outputs; build it with "
                         "class_names=train_loader.dataset.class_names")
    if config.class_names is None and tuple(config.classes) != names and not is_sentiment(names):
        raise ValueError(f"the data's classes are {', '.join(names)}, but the model names none, so it would "
                         f"label them {', '.join(config.classes)}; build it with "
                         "class_names=train_loader.dataset.class_names")  # a ham/spam model said negative/positive


def _criterion(output_dim: int, class_weights: Optional[Sequence[float]], device: torch.device) -> nn.Module:
    """BCE with logits for one output, cross-entropy for several; weighted by class when asked. With one
    output, the positive class's weight relative to the negative's scales its examples' loss."""
    if class_weights is None:
        return nn.BCEWithLogitsLoss() if output_dim == 1 else nn.CrossEntropyLoss()
    classes = 2 if output_dim == 1 else output_dim
    weights = torch.as_tensor(class_weights, dtype=torch.float32, device=device)
    if weights.shape != (classes,) or not bool((weights > 0).all()) or not bool(torch.isfinite(weights).all()):
        raise ValueError(f"class_weights must be {classes} positive numbers, one per class, got {class_weights}")
    if output_dim == 1:
        return nn.BCEWithLogitsLoss(pos_weight=weights[1] / weights[0])
    return nn.CrossEntropyLoss(weight=weights)


class SmoothedBinaryLoss(nn.Module):
    """A one-output loss (``BCEWithLogitsLoss``) toward targets moved ``smoothing`` of the way to 1/2:
    ``t * (1 - smoothing) + smoothing / 2``, so a review's target is 1 - s/2 or s/2 (soft targets alike)."""

    def __init__(self, criterion: nn.Module, smoothing: float):
        super().__init__()
        self.criterion, self.smoothing = criterion, smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits, targets * (1 - self.smoothing) + self.smoothing / 2)


def label_smoothed(criterion: nn.Module, smoothing: float) -> nn.Module:
    """``criterion`` with label smoothing (Szegedy et al. 2016): the target moves ``smoothing`` of the way to
    all classes alike, which keeps the model from growing ever more confident on the training reviews."""
    if not smoothing:
        return criterion
    if isinstance(criterion, nn.BCEWithLogitsLoss):
        return SmoothedBinaryLoss(criterion, smoothing)
    if isinstance(criterion, nn.CrossEntropyLoss):
        return nn.CrossEntropyLoss(weight=criterion.weight, ignore_index=criterion.ignore_index,
                                   reduction=criterion.reduction, label_smoothing=smoothing)
    raise ValueError(f"label_smoothing works with nn.BCEWithLogitsLoss or nn.CrossEntropyLoss, not "
                     f"{type(criterion).__name__}; use 0 with this loss")


def model_stages(model: nn.Module) -> List[nn.Module]:
    """An LSTMClassifier's parts from the top down, as ULMFiT fine-tunes them: the classifier, each LSTM layer
    from the last to the first, the embedding."""
    if not all(isinstance(getattr(model, name, None), nn.Module) for name in ("embedding", "layers", "fc")):
        raise ValueError("layer_lr_decay and gradual_unfreezing need a model with embedding, layers and fc (an "
                         "LSTMClassifier); leave them off for another model")
    return [model.fc, *reversed(model.layers), model.embedding]


def parameter_groups(model: nn.Module, learning_rate: float, layer_lr_decay: float = 1.0) -> List[Dict[str, Any]]:
    """The optimizer's parameter groups (trainable parameters only): one at ``learning_rate``, or with
    ``layer_lr_decay`` > 1 ULMFiT's discriminative fine-tuning: the classifier (``fc``) at ``learning_rate``,
    each LSTM layer below it at the rate above divided by ``layer_lr_decay``, the embedding last. The first
    group holds the highest rate (the one the trainer reports)."""
    def trainable(module: nn.Module) -> List[nn.Parameter]:
        return [p for p in module.parameters() if p.requires_grad]

    if layer_lr_decay == 1.0:
        return [{"params": trainable(model), "lr": learning_rate}]
    groups = [{"params": trainable(stage), "lr": learning_rate / layer_lr_decay ** depth}
              for depth, stage in enumerate(model_stages(model))]
    if sum(len(group["params"]) for group in groups) != len(trainable(model)):
        raise ValueError("layer_lr_decay: the model has trainable parameters outside embedding, layers and fc; "
                         "use 1 for it")
    return [group for group in groups if group["params"]]


def create_trainer(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader,
                   learning_rate: float = default_of("learning_rate"), weight_decay: float = default_of("weight_decay"),
                   scheduler_type: Optional[str] = default_of("scheduler"),
                   gradient_clip: Optional[float] = default_of("gradient_clip"),
                   checkpoint_dir: Union[str, Path] = default_of("checkpoint_dir"),
                   optimizer_type: str = default_of("optimizer"), epochs: int = default_of("epochs"),
                   device: Optional[Union[str, torch.device]] = None,
                   class_weights: Optional[Sequence[float]] = None,
                   layer_lr_decay: float = default_of("layer_lr_decay"),
                   plateau_patience: int = default_of("plateau_patience"), **trainer_kwargs: Any) -> Trainer:
    """The recommended way to build a Trainer.

    Adam (or AdamW) over the trainable parameters (``layer_lr_decay``: see ``parameter_groups``),
    ``BCEWithLogitsLoss`` for one output and cross-entropy for several (``class_weights``, one per
    class, weigh each class's examples), and the named scheduler (``plateau_patience``: epochs without a new
    best before the plateau schedule halves the rate; ``epochs`` sets the cosine schedule's
    planned length, which ``max_minutes`` may shorten, and the slanted triangular schedule's length). Extra keyword arguments go to ``Trainer``.
    """
    learning_rate = check_setting("learning_rate", learning_rate, "learning_rate")
    weight_decay = check_setting("weight_decay", weight_decay, "weight_decay")
    optimizer_type = check_setting("optimizer", optimizer_type, "optimizer_type")
    device = resolve_device(device)
    model.to(device)
    groups = parameter_groups(model, learning_rate, check_setting("layer_lr_decay", layer_lr_decay, "layer_lr_decay"))
    optimizer = build_optimizer(OPTIMIZERS[optimizer_type], groups, device, lr=learning_rate, weight_decay=weight_decay)
    criterion = _criterion(getattr(getattr(model, "config", None), "output_dim", 1), class_weights, device)
    accumulation = check_setting("accumulation_steps", trainer_kwargs.get("accumulation_steps", 1),
                                 "accumulation_steps")
    # the plateau schedule counts as torch's does: it halves the rate after *more than* its patience
    patience = check_setting("plateau_patience", plateau_patience, "plateau_patience") - 1
    scheduler = create_scheduler(optimizer, scheduler_type, epochs=epochs, plateau_patience=patience,
                                 steps_per_epoch=math.ceil(len(train_loader) / accumulation))
    return Trainer(model, train_loader, val_loader, optimizer, criterion, scheduler=scheduler,
                   gradient_clip=gradient_clip, checkpoint_dir=checkpoint_dir, device=device, **trainer_kwargs)
