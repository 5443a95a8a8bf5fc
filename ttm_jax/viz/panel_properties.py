"""The properties panel: the current step, the voxel under the mouse (or the selected one),
and editing a selected memory element and replaying the model from it.

An edit changes a copy of a memory record of the current step (the dump files are never
modified); replay re-runs the model (`--checkpoint`) from there (`replay.py`) and the app
shows its results beside the recording.
"""

import logging
from typing import Optional, Tuple

import numpy as np
from imgui_bundle import imgui

from ttm_jax import dumps
from ttm_jax import tokens
from ttm_jax.viz import panels
from ttm_jax.viz import replay as replay_lib

logger = logging.getLogger(__name__)

EDITABLE = ('memory_in', 'memory_out')


class PropertiesPanel:
  """The properties panel of `app.DashboardApp`, with the edits and replays it starts (a
  mixin: it reads the app's sequence, step and selection, and changes its `edits` and
  `replay_result`)."""

  # ---- The panel. ----

  def _properties_panel(self) -> None:
    imgui.push_text_wrap_pos(0.0)  # Wrap text at the panel's right edge.
    step = self.current_step
    if self.sequence is not None and step is not None:
      info = self.sequence.info
      imgui.separator_text('Step')
      imgui.text(f"{info['problem']} = {info['target']}")
      imgui.text('prediction ')
      imgui.same_line(0, 0)
      imgui.text_colored(panels.GREEN if info['correct'] else panels.RED,
                         f"{info['prediction']} ({'correct' if info['correct'] else 'wrong'})")
      records = self.sequence.at_step(step)
      imgui.text(f"step {step + 1} of {info['num_steps']}")  # 1-based, as on the timeline.
      if 'inputs' in records:
        shown = ' '.join(tokens.tokens_to_string([t]) for t in records['inputs']['data'])
        imgui.text(f'inputs  {shown}')
      if 'prediction' in records:
        imgui.text(f"predicts {tokens.tokens_to_string([records['prediction']['data']])}")
    elif self.sequence_error:
      imgui.text_colored(panels.RED, self.sequence_error)

    voxel = self.hovered if self.hovered >= 0 else self.selected_index
    imgui.separator_text('Voxel' + (' (hovered)' if self.hovered >= 0 else
                                    ' (selected)' if voxel >= 0 else ''))
    if voxel >= 0:
      info = self.describe_voxel(voxel)
      imgui.text(f"{info['name']}  [{info['where']}]")
      imgui.text(f"value {info['value']:.5g}")
      meta = info['metadata']
      imgui.text_disabled(', '.join(f'{k} {meta[k]}' for k in
                                    ('module', 'step', 'example', 'epoch', 'batch', 'run')
                                    if k in meta))
    else:
      imgui.text_disabled('hover or click a voxel')

    imgui.separator_text('Edit and replay')
    selected = self.selected
    if selected is not None and selected.name in EDITABLE and step is not None:
      current = float(self.record_data(selected.name, step)[selected.cell])
      imgui.text(f'{selected.name}{list(selected.cell)} at step {step}')
      imgui.set_next_item_width(140)
      changed, value = imgui.input_float('value', current, 0.1, 1.0, '%.4f')
      if changed:
        self.edit(selected.name, selected.cell, value)
    else:
      imgui.text_disabled('select a memory voxel to edit it')
    imgui.begin_disabled(self.step_fn is None or step is None)
    if imgui.button('Replay from here'):
      self.replay()
    imgui.end_disabled()
    imgui.same_line()
    if imgui.button('Revert edits'):
      self.revert_edits()
    if self.step_fn is None:
      imgui.text_disabled('replay needs --checkpoint')
    if self.replay_result is not None:
      imgui.text(f'replay {self.replay_result.summary()}')

    imgui.separator_text('Messages')
    for error, text in list(self.messages)[-2:]:
      if error:
        imgui.text_colored(panels.RED, text)
      else:
        imgui.text(text)
    imgui.pop_text_wrap_pos()

  # ---- Editing and replay. ----

  def edit(self, name: str, cell: Tuple[int, ...], value: float) -> None:
    """Sets element `cell` of memory record `name` at the current step to `value` (in a
    copy: the dump on disk is never modified)."""
    if name not in EDITABLE:
      raise ValueError(f'only {EDITABLE} can be edited, not {name!r}')
    step = self.current_step
    key = (str(self.sequence.path), step, name)
    data = np.array(self.record_data(name, step), copy=True)
    data[cell] = value
    self.edits[key] = data
    self._edit_count += 1
    logger.info('edited %s%s at step %d to %.4g', name, list(cell), step, value)

  def revert_edits(self) -> None:
    """Drops every edit and the replay result."""
    self.edits.clear()
    self._edit_count += 1
    self.replay_result = None

  def replay(self) -> Optional[replay_lib.ReplayResult]:
    """Replays from the current step: with the selected memory (`memory_in` of this step,
    or `memory_out`, which feeds the next step), edits applied; `memory_in` if nothing
    editable is selected. The result is shown beside the recording."""
    if self.step_fn is None:
      self.message('replay needs a model: start the viewer with --checkpoint WORKDIR',
                   error=True)
      return None
    step = self.current_step
    if step is None:
      return None
    name = self.selected.name if self.selected and self.selected.name in EDITABLE \
        else 'memory_in'
    if name not in self.sequence.at_step(step):
      self.message(f'step {step} has no {name} record to replay from', error=True)
      return None
    start = step if name == 'memory_in' else step + 1
    try:
      result = replay_lib.replay(self.sequence, start, self.record_data(name, step),
                                 self.step_fn)
    except (ValueError, dumps.DumpError) as e:
      self.message(str(e), error=True)
      return None
    self.replay_result = result
    logger.info('replay %s', result.summary())
    return result
