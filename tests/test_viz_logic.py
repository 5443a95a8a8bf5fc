"""Tests for adaptive detail, the timeline and the live dump source (no OpenGL needed)."""

import logging

import pytest

from tests import synthetic
from ttm_jax import dump_files
from ttm_jax import dumps
from ttm_jax.viz import detail as detail_lib
from ttm_jax.viz import source as source_lib
from ttm_jax.viz import timeline as timeline_lib

SMALL = dict(d=8, m=4, r=2, heads=1, layers=1)


def test_detail_drops_when_slow_restores_with_headroom_and_logs(caplog):
  caplog.set_level(logging.INFO, logger='ttm_jax.viz.detail')
  detail = detail_lib.DetailController(target_fps=60, max_level=3)
  for _ in range(60):  # 2 s at 30 fps.
    detail.update(1 / 30)
  assert detail.level == 1 and detail.fps == pytest.approx(30)
  assert 'detail level 0 -> 1: 30.0 fps against a target of 60 fps (coarser)' in caplog.text
  for _ in range(30 * 10):  # Still slow: coarser again, at most every 2 s, up to the max.
    detail.update(1 / 30)
  assert detail.level == 3
  for _ in range(300):  # 100 fps: within [0.9, 2.2] x target, so no change.
    detail.update(1 / 100)
  assert detail.level == 3
  for _ in range(2000):  # 200 fps for 10 s: headroom, finer step by step.
    detail.update(1 / 200)
  assert detail.level == 0
  assert '(finer)' in caplog.text


def test_detail_by_hand():
  detail = detail_lib.DetailController(auto=False)
  for _ in range(300):
    detail.update(1 / 10)
  assert detail.level == 0
  detail.set_level(9)
  assert detail.level == detail.max_level


def test_timeline_steps_across_sequences_and_plays():
  timeline = timeline_lib.Timeline(speed=2.0)
  timeline.set_bounds([3, 2])
  timeline.seek(0, 2)
  timeline.step_forward()
  assert (timeline.sequence, timeline.step) == (1, 0)
  timeline.step_back()
  assert (timeline.sequence, timeline.step) == (0, 2)
  timeline.seek(1, 1)
  timeline.step_forward()  # At the very end: stays.
  assert (timeline.sequence, timeline.step) == (1, 1)
  assert not timeline.advance(1.0)  # Paused.
  timeline.playing = True
  assert timeline.advance(1.0)  # 2 steps: wraps to the start, then on.
  assert (timeline.sequence, timeline.step) == (0, 1)
  timeline.set_bounds([1])
  assert (timeline.sequence, timeline.step) == (0, 0)


def test_timeline_counts_examples_and_steps_from_one():
  timeline = timeline_lib.Timeline()
  assert timeline.counter('example') == timeline.counter('step') == '- / 0'
  timeline.set_bounds([5])  # One traced example, as `--mode=trace` writes.
  assert timeline.counter('example') == '1 / 1'
  assert timeline.counter('step') == '1 / 5'
  assert timeline.position('example') == (0, 1) and timeline.position('step') == (0, 5)
  timeline.set_bounds([3, 7])
  timeline.seek(1, 6)
  assert (timeline.counter('example'), timeline.counter('step')) == ('2 / 2', '7 / 7')


def test_source_follows_a_workdir_live(tmp_path):
  source = source_lib.DumpSource(tmp_path / 'run', poll_interval=1.0)
  assert not source.poll(now=0.0)
  assert 'no such folder' in source.error
  (tmp_path / 'run').mkdir()
  assert not source.poll(now=1.0)
  assert 'no dumps yet' in source.error
  dump_files.write_sequence(tmp_path / 'run' / 'dumps',
                            *synthetic.sequence('2×3', **SMALL))
  assert not source.poll(now=1.5)  # Within the poll interval: not looked at.
  assert source.poll(now=2.0)
  assert source.dump_dir == tmp_path / 'run' / 'dumps' and source.error is None
  assert [e['info']['problem'] for e in source.entries] == ['2×3']
  assert not source.poll(now=3.0)  # Unchanged.
  dump_files.write_sequence(source.dump_dir,
                            *synthetic.sequence('4×5', example=1, **SMALL))
  assert source.poll(now=4.0)
  assert len(source.entries) == 2
  assert source.load(1).info['problem'] == '4×5'
  assert source.load(1) is source.load(1)  # Cached.


def test_source_reports_corrupt_index_and_files(tmp_path):
  dump_files.write_sequence(tmp_path, *synthetic.sequence('2×3', **SMALL))
  source = source_lib.DumpSource(tmp_path, poll_interval=0.0)
  assert source.poll()
  path = tmp_path / source.entries[0]['file']
  path.write_bytes(path.read_bytes()[:100])
  with pytest.raises(dumps.DumpError, match='corrupt or truncated'):
    source.load(0)
  (tmp_path / 'index.json').write_text('{not json')
  assert not source.poll()
  assert 'corrupt dump index' in source.error
  assert len(source.entries) == 1  # The last good list is kept.
