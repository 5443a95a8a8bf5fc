"""The curriculum: stage order, review mix, promotion, final threshold, early stopping, the
learning-rate plateau, and its saved state."""

import numpy as np
import pytest

from configs import mult
from ttm_jax import curriculum as curriculum_lib
from ttm_jax import factory

Curriculum = curriculum_lib.Curriculum


def config_with(**train_overrides):
  config = mult.get_config('runlocal')
  config.train.update(train_overrides)
  return config


def _evaluated(accuracy, train_loss=1.0):
  """An evaluation summary as `advance` reads it (with the epoch's training loss)."""
  return {'sequence_accuracy': accuracy, 'position_accuracy': accuracy, 'train_loss': train_loss}


def test_promotion_after_the_window_and_forced_promotion():
  config = config_with(threshold=0.9, window=5, max_epochs_per_stage=8, patience=100)
  curriculum = Curriculum((1, 2, 3))
  for i, accuracy in enumerate([0.5, 0.95, 0.95, 0.95, 0.95]):
    assert curriculum.advance(_evaluated(accuracy), 10 * (i + 1), 1.0, config) == {}
  assert curriculum.stage == 1  # Mean of the last 5 is 0.86.
  changes = curriculum.advance(_evaluated(0.95), 60, 0.25, config)
  assert curriculum.stage == 2
  assert changes == {'stage_start': 60, 'lr_scale': 1.0} and curriculum.history == []
  for i in range(8):
    curriculum.advance(_evaluated(0.1), 70 + i, 1.0, config)
  assert curriculum.stage == 3  # Forced after max_epochs_per_stage.
  for i in range(20):  # ...but the last stage ends only when passed.
    curriculum.advance(_evaluated(0.1), 80 + i, 1.0, config)
  assert curriculum.stage == 3 and not curriculum.finished


def test_without_restart_per_stage_promotion_keeps_the_schedule():
  config = config_with(window=1)
  config.optim.restart_per_stage = False
  curriculum = Curriculum((1, 2))
  assert curriculum.advance(_evaluated(0.95), 10, 0.5, config) == {}
  assert curriculum.stage == 2


def test_plateau_halves_the_rate_down_to_the_floor_and_restarts_with_the_stage():
  config = config_with(window=100, patience=1000)
  config.optim.update(plateau_patience=3, plateau_factor=0.5, plateau_min_improvement=0.1,
                      peak_lr=1e-3, end_lr=3e-4)
  curriculum = Curriculum((1, 2))
  scale, cuts = 1.0, []
  # 0.8 and 0.65 are less than 10% under the best before them (0.85 and 0.7): no improvement.
  for step, loss in enumerate([1.0, 0.85, 0.8, 0.8, 0.8, 0.7, 0.65, 0.66, 0.7, 0.65, 0.64,
                               0.64, 0.64, 0.64, 0.64, 0.64]):
    changes = curriculum.advance(_evaluated(0.0, loss), step, scale, config)
    if changes:
      scale = changes['lr_scale']
      cuts.append((step, scale))
  # New bests at 0, 1, 5; cuts 3 evaluations after the last best or cut; floor 0.3.
  assert cuts == [(4, 0.5), (8, pytest.approx(0.3))]
  changes = curriculum.advance(_evaluated(1.0), 99, scale, config_with(window=1))
  assert changes == {'stage_start': 99, 'lr_scale': 1.0} and curriculum.stage_best_loss == -1.0


def test_last_stage_finishes_at_the_final_threshold():
  config = config_with(stages='1', last_stage=1, window=1, threshold=0.9, final_threshold=0.99)
  curriculum = Curriculum((1,))
  curriculum.advance(_evaluated(0.95), 10, 1.0, config)
  assert not curriculum.finished
  curriculum.advance(_evaluated(0.99), 20, 1.0, config)
  assert curriculum.finished == 'passed stage 1'


def test_a_raised_final_threshold_reopens_a_finished_run_and_only_that():
  curriculum = Curriculum((1,))
  curriculum.advance(_evaluated(0.99), 10, 1.0, config_with(
      stages='1', last_stage=1, window=1, final_threshold=0.99))
  assert curriculum.finished == 'passed stage 1'
  curriculum.reopen(config_with(window=1, final_threshold=0.99).train)
  assert curriculum.finished == 'passed stage 1'  # Still met: stays finished.
  curriculum.reopen(config_with(window=1, final_threshold=0.995).train)
  assert not curriculum.finished
  curriculum.finished = 'early stopping: no improvement in 5 evaluations (stage 1)'
  curriculum.reopen(config_with(window=1, final_threshold=0.995).train)
  assert curriculum.finished.startswith('early stopping')


def test_custom_stage_order_promotes_and_finishes_in_it():
  config = config_with(stages='1,2,5', last_stage=5, window=1)
  curriculum = Curriculum.from_config(config)
  stages = []
  for step in range(4):
    curriculum.advance(_evaluated(0.995), step, 1.0, config)
    stages.append(curriculum.stage)
  assert stages == [2, 5, 5, 5] and curriculum.finished == 'passed stage 5'
  assert curriculum.best_progress == pytest.approx(2.995)


def test_early_stopping_after_patience():
  config = config_with(patience=3, window=100)
  curriculum = Curriculum()
  for i, accuracy in enumerate([0.5, 0.4, 0.5, 0.45]):
    assert not curriculum.finished
    curriculum.advance(_evaluated(accuracy), i, 1.0, config)
  assert curriculum.finished.startswith('early stopping')


@pytest.mark.parametrize('overrides, message', [
    ({'stages': '1,x'}, 'expected stage numbers'),
    ({'stages': '1,9'}, 'distinct stages'),
    ({'stages': '1,2', 'last_stage': 7}, 'last_stage=7 is not in'),
    ({'stages': '2,1', 'start_stage': 1, 'last_stage': 2}, 'comes after'),
])
def test_bad_stage_order_is_a_config_error(overrides, message):
  with pytest.raises(factory.ConfigError, match=message):
    curriculum_lib.stage_order(config_with(**overrides).train)


@pytest.mark.parametrize('order, stage', [((1, 1, 2), 1), ((1, 8), 1), ((1, 2), 3), ((), 1)])
def test_bad_stage_order(order, stage):
  with pytest.raises(ValueError):
    Curriculum(order, stage=stage)


def test_review_draws_earlier_stages_of_the_order_only():
  curriculum = Curriculum((1, 2, 5, 3), review=0.5, stage=3)
  stages = curriculum.example_stages(np.random.default_rng(0), 4000)
  counts = {s: int(np.sum(stages == s)) for s in (1, 2, 3, 4, 5, 6, 7)}
  assert counts[4] == counts[6] == counts[7] == 0
  assert 1800 < counts[3] < 2200 and all(550 < counts[s] < 780 for s in (1, 2, 5))
  assert (Curriculum((1, 2), review=0.5).example_stages(np.random.default_rng(0), 50)
          == 1).all()  # Nothing to review at the first stage.
  assert curriculum.earlier_stages == (1, 2, 5) and curriculum.max_digits == 3


def test_state_round_trip_leaves_out_the_config():
  curriculum = Curriculum((1, 2, 3), review=0.3)
  curriculum.advance(_evaluated(0.95), 10, 1.0, config_with(window=1))
  state = curriculum.state()
  assert 'order' not in state and 'review' not in state and state['stage'] == 2
  other = Curriculum((1, 2, 3), review=0.3)
  other.restore(state)
  assert other == curriculum
