"""The curriculum: the stages in the order visited, the stage training is on (the one place it
lives: the dataset asks it), the review mix of earlier stages, promotion, early stopping, and
the learning-rate plateau.

After each evaluation, `advance` appends the stage's sequence accuracy; the stage is passed when
the mean of the last `train.window` accuracies reaches `train.threshold` (at the last stage,
`train.final_threshold`, and training ends) or, but for the last, after
`train.max_epochs_per_stage` evaluations. A run that passed its last stage trains on when it
is resumed with a `final_threshold` its history no longer meets (`reopen`).
Progress, the measure of 'best' and of early stopping, is (stages passed) + sequence accuracy.
The plateau: `optim.plateau_patience` evaluations in which the stage's training loss (the mean
of the epoch before the evaluation) has not improved on its best by the fraction
`optim.plateau_min_improvement` cut the learning-rate scale by `optim.plateau_factor`
(`optim.py`). The training loss, a mean over thousands of examples, is the measure because a
best-so-far over a few hundred evaluated problems is mostly noise: measured on the held-out
accuracy, a run halved its rate five times in 23,000 steps of 3×3 while still improving.
"""

import dataclasses
import os
from typing import Any, Dict, Sequence, Tuple

import ml_collections
import numpy as np

from ttm_jax import data
from ttm_jax import factory
from ttm_jax import optim
from ttm_jax.log import log

ALL_STAGES = tuple(range(1, len(data.STAGES) + 1))


def stage_order(tc: ml_collections.ConfigDict) -> Tuple[int, ...]:
  """The stage order of `config.train.stages`, checked against `start_stage` and
  `last_stage`."""
  try:
    order = tuple(int(stage) for stage in str(tc.stages).split(','))
  except ValueError:
    raise factory.ConfigError(f'config.train.stages={tc.stages!r}: expected stage numbers '
                              'separated by commas, e.g. "1,2,5"') from None
  try:
    data.check_stage_order(order)
  except ValueError as e:
    raise factory.ConfigError(f'config.train.stages={tc.stages!r}: {e}') from None
  for name in ('start_stage', 'last_stage'):
    if tc[name] not in order:
      raise factory.ConfigError(f'config.train.{name}={tc[name]} is not in config.train.stages'
                                f'={tc.stages!r}')
  if order.index(tc.start_stage) > order.index(tc.last_stage):
    raise factory.ConfigError(f'config.train.start_stage={tc.start_stage} comes after '
                              f'config.train.last_stage={tc.last_stage} in {tc.stages!r}')
  return order


def progress(order: Sequence[int], stage: int, accuracy: float) -> float:
  """Curriculum progress: the stages of `order` passed before `stage`, plus `accuracy` on it."""
  return order.index(stage) + accuracy


def passed(history: Sequence[float], threshold: float, window: int) -> bool:
  """True when the mean of the last `window` accuracies is at least `threshold`."""
  return len(history) >= window and float(np.mean(history[-window:])) >= threshold


@dataclasses.dataclass
class Curriculum:
  """Where training stands in the curriculum; `state()` is saved as checkpoint meta.

  Attributes:
    order: the stages (1-7, `data.STAGES`) in the order visited.
    review: the fraction of each batch drawn from the stages before the current one.
    stage: the current stage (default: the first of `order`).
  """
  order: Tuple[int, ...] = ALL_STAGES
  review: float = 0.0
  stage: int = 0
  history: list = dataclasses.field(default_factory=list)  # Eval accuracies this stage.
  epochs_in_stage: int = 0
  best_progress: float = -1.0
  evals_since_best: int = 0
  stage_best_loss: float = -1.0  # Best training loss this stage (-1: none yet; the plateau
  evals_since_stage_best: int = 0  # measure), and evaluations since it or the last lr cut.
  finished: str = ''  # Why training ended, once it has.
  seconds: float = 0.0  # Wall-clock time of training and evaluation so far (over resumes).

  def __post_init__(self):
    self.order = tuple(self.order)
    data.check_stage_order(self.order)
    self.stage = self.stage or self.order[0]
    if self.stage not in self.order:
      raise ValueError(f'stage {self.stage} is not in the stage order {list(self.order)}')

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'Curriculum':
    """A fresh curriculum at `config.train.start_stage`."""
    tc = config.train
    return cls(stage_order(tc), tc.review, tc.start_stage)

  def state(self) -> Dict[str, Any]:
    """What changes as training goes (the order and review come from the config)."""
    return {k: v for k, v in dataclasses.asdict(self).items() if k not in ('order', 'review')}

  def restore(self, state: Dict[str, Any]):
    """Sets what `state()` returned."""
    for name, value in state.items():
      setattr(self, name, value)

  def reopen(self, tc: ml_collections.ConfigDict):
    """Undoes a finish by passing the last stage if `tc.final_threshold` (raised since) is
    no longer met: the run then goes on as one started with that threshold would have."""
    if (self.finished == self.passed_last
        and not passed(self.history, tc.final_threshold, tc.window)):
      log.info('stage %d: the last %d evaluations do not reach final_threshold=%g: training '
               'goes on', self.stage, tc.window, tc.final_threshold)
      self.finished = ''

  @property
  def passed_last(self) -> str:
    """`finished` of a run that passed its current stage, the last."""
    return f'passed stage {self.stage}'

  @property
  def earlier_stages(self) -> Tuple[int, ...]:
    """The stages visited before the current one."""
    return self.order[:self.order.index(self.stage)]

  @property
  def max_digits(self) -> int:
    """The longest operand of the stages visited so far."""
    return max(data.stage_digits(s) for s in self.order[:self.order.index(self.stage) + 1])

  def out_of_time(self, max_seconds: float) -> bool:
    """True once training and evaluation have taken `max_seconds` (0: no limit)."""
    return 0 < max_seconds <= self.seconds

  def example_stages(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
    """The stage of each example of a batch: `[batch_size]`, the current stage but for a
    `review` fraction drawn uniformly from the earlier stages."""
    stages = np.full(batch_size, self.stage)
    if self.review and self.earlier_stages:
      earlier = rng.random(batch_size) < self.review
      stages[earlier] = rng.choice(self.earlier_stages, size=int(earlier.sum()))
    return stages

  def ended_sentence(self, step: int, workdir: str, tc: ml_collections.ConfigDict) -> str:
    """Why training ended, and what to do next, in a sentence."""
    where = f'at step {step:,} in stage {self.stage}'
    best = os.path.join(workdir, 'best')
    if self.finished == self.passed_last:
      return (f'training finished {where}: the curriculum passed its last stage; the best '
              f'checkpoint is in {best}')
    if self.finished:
      return f'training ended {where} ({self.finished}); the best checkpoint is in {best}'
    return (f'training stopped {where}: it reached config.train.{self.limit(tc)} before the '
            'curriculum ended; a larger value resumes it from there')

  def limit(self, tc: ml_collections.ConfigDict) -> str:
    """The limit that ends a run before its curriculum: `max_seconds=...` or `num_steps=...`."""
    if self.out_of_time(tc.max_seconds):
      return f'max_seconds={tc.max_seconds}'
    return f'num_steps={tc.num_steps}'

  def advance(self, summary: Dict[str, float], step: int, lr_scale: float,
              config: ml_collections.ConfigDict) -> Dict[str, Any]:
    """Updates the curriculum after an evaluation (`summary`: its `sequence_accuracy`, and
    `train_loss`, the mean training loss since the last one): best/patience, promotion, the
    learning-rate plateau.

    Returns:
      the train-state scalars to change (`stage_start`, `lr_scale`; `optim.py`), if any.
    """
    tc, oc = config.train, config.optim
    accuracy = summary['sequence_accuracy']
    self.history.append(accuracy)
    self.epochs_in_stage += 1
    reached = progress(self.order, self.stage, accuracy)
    if reached > self.best_progress:
      self.best_progress, self.evals_since_best = reached, 0
    else:
      self.evals_since_best += 1
    loss = summary['train_loss']
    if self.stage_best_loss < 0 or loss < self.stage_best_loss * (1 - oc.plateau_min_improvement):
      self.stage_best_loss, self.evals_since_stage_best = loss, 0
    else:
      self.evals_since_stage_best += 1
    last = self.stage in (tc.last_stage, self.order[-1])
    threshold = tc.final_threshold if last else tc.threshold
    done = passed(self.history, threshold, tc.window)
    if done and last:
      self.finished = self.passed_last
      return {}
    if done or (self.epochs_in_stage >= tc.max_epochs_per_stage and not last):
      self.stage = self.order[self.order.index(self.stage) + 1]
      self.history, self.epochs_in_stage = [], 0
      self.stage_best_loss, self.evals_since_stage_best = -1.0, 0
      log.info('promoted to stage %d at step %d', self.stage, step)
      return {'stage_start': step, 'lr_scale': 1.0} if oc.restart_per_stage else {}
    if self.evals_since_best >= tc.patience:
      self.finished = (f'early stopping: no improvement in {tc.patience} evaluations '
                       f'(stage {self.stage})')
    elif self.evals_since_stage_best >= oc.plateau_patience and \
        lr_scale > optim.min_lr_scale(oc):
      self.evals_since_stage_best = 0
      new_scale = max(lr_scale * oc.plateau_factor, optim.min_lr_scale(oc))
      log.info('stage %d plateaued: learning-rate scale %.4g -> %.4g at step %d', self.stage,
               lr_scale, new_scale, step)
      return {'lr_scale': new_scale}
    return {}
