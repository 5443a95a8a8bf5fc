"""Orbax checkpoints of a training run, and loading a trained model for inference.

A workdir holds `config.json` (the config it was trained with), `checkpoints/` (the latest
`keep` steps), `best/` (the best step by curriculum progress) and, while a process trains
there, `train.lock` (`training_lock`). Each step has three items:
`params`, `train` (optimizer state, step, RNG) and `meta` (JSON: curriculum stage, data RNG
state, history, model and task config). Inference restores `params` and `meta` only, so a
shipped checkpoint may leave `train` out.
"""

import contextlib
import fcntl
import json
import os
from typing import Any, Dict, Optional, Tuple

import jax
import ml_collections
import orbax.checkpoint as ocp

from ttm_jax import curriculum
from ttm_jax import factory
from ttm_jax import files
from ttm_jax.log import log

CONFIG_FILE = 'config.json'
LOCK_FILE = 'train.lock'  # Held (flock) by the process training in a workdir.
MATCHED_SECTIONS = ('model', 'task')  # A checkpoint must agree with the config on these...
# ...except how the steps are computed.
UNMATCHED_FIELDS = ('scan', 'scan_unroll', 'remat', 'compute_dtype')
# Fields added after checkpoints existed, at the value that gives the model those were trained
# with: a checkpoint or config.json without the field reads as having this value.
ADDED_FIELDS = {('model', 'kind'): 'ttm', ('model', 'token_embed_stddev'): 0.01,
                ('task', 'layout'): 'packed', ('model', 'remat'): False,
                ('model', 'compute_dtype'): 'float32', ('task', 'positions'): 'slots',
                ('task', 'place_offset'): 0, ('task', 'coupled'): False,
                ('task', 'product_steps'): False, ('task', 'skip_unpaired'): False}


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used; the message says why."""


class ConfigMismatchError(CheckpointError):
  """A checkpoint trained with another model or task config."""


def manager(directory: str, keep: int = 1, writer: bool = False) -> ocp.CheckpointManager:
  """A synchronous orbax CheckpointManager of `directory` keeping the last `keep` steps.
  `writer`: the one process that saves there (it holds `training_lock`), which removes the
  temporary folders of saves that a kill cut short (orbax renames a step's folder into place
  when it is complete, so a step is saved whole or not at all)."""
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False,
                                           cleanup_tmp_directories=writer))


def config_sections(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """The part of a config that a checkpoint's parameters depend on."""
  return {name: {k: v for k, v in config[name].to_dict().items() if k not in UNMATCHED_FIELDS}
          for name in MATCHED_SECTIONS}


def check_config_matches(saved: Dict[str, Any], config: ml_collections.ConfigDict,
                         where: str):
  """Raises ConfigMismatchError naming every model/task field where `saved` differs."""
  current = config_sections(config)
  saved_value = lambda section, key: saved.get(section, {}).get(
      key, ADDED_FIELDS.get((section, key)))
  diffs = [f'{section}.{key}: checkpoint {saved_value(section, key)!r} vs config {value!r}'
           for section, fields in current.items() for key, value in fields.items()
           if saved_value(section, key) != value]
  if diffs:
    raise ConfigMismatchError(f'the checkpoint in {where} does not match the config ('
                          + '; '.join(diffs) + '): use the config it was trained with, or '
                          'another --workdir')


def _error_summary(e: Exception) -> str:
  """`Type: first line of the message` (cut), for an error line."""
  return f'{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'


def read_meta(steps: ocp.CheckpointManager, step: int) -> Dict[str, Any]:
  """The `meta` item of a saved step.

  Raises:
    CheckpointError: it is missing, not JSON, or not the meta of a ttm_jax checkpoint.
  """
  try:
    meta = steps.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
  except Exception as e:  # Orbax raises many types for a damaged or foreign step.
    raise CheckpointError(f'cannot read the metadata of step {step} in {steps.directory} '
                          f'({_error_summary(e)})') from None
  if not isinstance(meta, dict) or not isinstance(meta.get('config'), dict):
    raise CheckpointError(f'step {step} in {steps.directory} is not a ttm_jax checkpoint (its '
                          'metadata has no model config)')
  return meta


# True once a save failed: orbax's threads may still print about the files they were writing
# when the process exits (main.py then exits without running them to the end).
save_failed = False


def _save_error(e: Exception) -> str:
  """Why a save failed, with what to do: from the OSError, or the errno orbax's tensorstore
  errors carry in their text (`[os_error_code='28']`)."""
  code = files.errno_of(e)
  if code is None:
    return _error_summary(e)
  hint = files.errno_hint(code)
  return os.strerror(code) + (f'; {hint}' if hint else '')


class Checkpoints:
  """The latest and best checkpoints of one workdir, written by the process training there.

  A step is saved to `checkpoints/` first and then, if it is the best, to `best/`; its meta
  records which (`best`). A kill between the two (or during the second) is repaired when the
  run resumes from that step, before anything else is saved or deleted (`restore_latest`), so
  at no moment is the best step lost. A step saved again (one that was damaged, or a best
  step saved before the kill that the resumed run reaches again) replaces the old folder.
  """

  def __init__(self, workdir: str, keep: int = 3):
    self.workdir = workdir
    self.latest = manager(os.path.join(workdir, 'checkpoints'), keep, writer=True)
    self.best = manager(os.path.join(workdir, 'best'), 1, writer=True)

  @staticmethod
  def _save_args(params, train_state, meta):
    return ocp.args.Composite(params=ocp.args.StandardSave(params),
                              train=ocp.args.StandardSave(train_state),
                              meta=ocp.args.JsonSave(meta))

  @staticmethod
  def _save_to(steps: ocp.CheckpointManager, step: int, args):
    """Saves `step` in `steps`; CheckpointError (one line) if it cannot, e.g. on a full disk,
    where orbax's threads print a traceback for every file they were writing: what they print
    during the save is dropped then (and kept if it succeeds)."""
    global save_failed
    try:
      with files.stderr_held():
        if step in steps.all_steps():  # Orbax saves a step once: the old one goes first.
          steps.delete(step)
        steps.save(step, args=args, force=True)
    except Exception as e:  # Orbax raises many types (OSError, ValueError with an errno).
      save_failed = True
      raise CheckpointError(f'cannot save step {step} in {steps.directory}: '
                            f'{_save_error(e)}') from None

  def save(self, step: int, params, train_state, meta: Dict[str, Any], is_best: bool):
    """Saves `step` as the latest (and, if `is_best`, as the best) checkpoint."""
    args = self._save_args(params, train_state, dict(meta, best=is_best))
    self._save_to(self.latest, step, args)
    if is_best:
      self._save_to(self.best, step, args)

  def restore_latest(self, params_like, train_like,
                     config: ml_collections.ConfigDict) -> Optional[Tuple[Any, Any, Dict]]:
    """`(params, train_state, meta)` of the newest readable step, or None if there is none.

    A step that fails to restore is reported, and the one before it is tried; training
    overwrites it when it gets there again. If the step restored is the best one and `best/`
    holds an older one (a kill cut the best save short), it is saved to `best/` now.

    Raises:
      CheckpointError: the checkpoints were trained with another model or task config, or
        none of the saved steps is readable (checked before anything is overwritten).
    """
    steps = sorted(self.latest.all_steps(), reverse=True)
    for step in steps:
      try:
        meta = read_meta(self.latest, step)
        check_config_matches(meta['config'], config, self.latest.directory)
        restored = self.latest.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(params_like),
            train=ocp.args.StandardRestore(train_like)))
      except ConfigMismatchError:
        raise
      except CheckpointError as e:
        log.warning('%s; resuming from the step before it (training overwrites step %d when '
                    'it gets there)', e, step)
        continue
      except Exception as e:  # Orbax raises many types for a damaged step.
        log.warning('checkpoint step %d in %s is unreadable (%s); resuming from the step '
                    'before it (training overwrites step %d when it gets there)',
                    step, self.latest.directory, _error_summary(e), step)
        continue
      best = self.best.latest_step()
      if meta.get('best') and (best is None or best < step):
        log.warning('best/ lacks step %d, the best step (its save was cut short): saved it '
                    'there from checkpoints/', step)
        self._save_to(self.best, step, self._save_args(restored['params'], restored['train'],
                                                       meta))
      return restored['params'], restored['train'], meta
    if not steps and self.best.all_steps():
      raise CheckpointError(f'{self.workdir} has a best checkpoint but no checkpoints/ to '
                            'resume from (a shipped export?); to train from it, use '
                            f'--config.train.init_from={self.workdir} with another --workdir')
    if steps:
      raise CheckpointError(f'none of the saved steps in {self.latest.directory} '
                            f'({", ".join(map(str, steps))}) is readable; move them away to '
                            'start over, or use another --workdir')
    return None

  def close(self):
    self.latest.close()
    self.best.close()


@contextlib.contextmanager
def training_lock(workdir: str):
  """Holds `workdir/train.lock` while one process trains there, so that a second one (another
  `main.py` or `tools/ablate.py` given the same workdir) stops with CheckpointError instead of
  resuming the same steps and overwriting them. An flock, which the system releases when the
  process ends, killed or not; the file is removed on release, before the lock is let go (a
  process that locked a removed file tries again). Only process 0 of a multi-host run takes
  it."""
  if jax.process_index() != 0:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  while True:
    f = open(path, 'a+')
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or 'unknown'
      f.close()
      raise CheckpointError(f'{workdir} is being trained by another process (pid {holder}); '
                            'wait for it to end or stop it, or use another --workdir') from None
    try:
      if os.path.samestat(os.fstat(f.fileno()), os.stat(path)):
        break
    except FileNotFoundError:
      pass
    f.close()  # Locked a file its holder removed on release: lock the new one.
  try:
    f.truncate(0)
    f.write(f'{os.getpid()}\n')
    f.flush()
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):  # Removed by hand meanwhile.
      os.remove(path)
    f.close()  # Releases the lock.


def write_config(workdir: str, config: ml_collections.ConfigDict):
  """Writes `config.json`, atomically."""
  os.makedirs(workdir, exist_ok=True)
  files.write_text(os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2))


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with."""
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path) as f:
      config = json.load(f)
  except FileNotFoundError:
    raise CheckpointError(f'{workdir} has no {CONFIG_FILE}: not a training workdir') from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f'{path} is not valid JSON ({e})') from None
  if not isinstance(config, dict) or not all(isinstance(config.get(name), dict)
                                             for name in MATCHED_SECTIONS) or not isinstance(
                                                 config.get('train', {}), dict):
    raise CheckpointError(f'{path} is not the config of a ttm_jax run (its model and task '
                          'are not JSON objects)')
  for (section, key), value in ADDED_FIELDS.items():
    config[section].setdefault(key, value)
  try:
    config = ml_collections.ConfigDict(config)
    factory.make_framing(config)  # What is read from it: the task and the stages.
    if 'train' in config:
      curriculum.stage_order(config.train)
  except Exception as e:  # pylint: disable=broad-except  # A field missing or of a wrong type.
    raise CheckpointError(f'{path} is not the config of a ttm_jax run ({type(e).__name__}: '
                          f'{str(e).splitlines()[0] if str(e) else ""})') from None
  return config


def load_params(workdir: str, config: ml_collections.ConfigDict, which: str = 'best',
                step: Optional[int] = None,
                folder: Optional[str] = None) -> Tuple[Any, Dict[str, Any]]:
  """Restores `(params, meta)` from `workdir/<which>` (`'best'`, else the latest step), or,
  given `step`, that saved step (from `checkpoints/` or `best/`, or only from `folder`), onto
  this process's first device, whichever devices saved it; `meta['step']` is the step restored.

  Raises:
    CheckpointError: no checkpoint (or no such step), a mismatching config, or an unreadable
      step.
  """
  model = factory.make_model(config)
  framing = factory.make_framing(config)
  tokens = jax.ShapeDtypeStruct((1, 1, framing.tokens_per_step), 'int32')
  # On this process's first device, whatever topology saved it (e.g. a multi-host run).
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  params_like = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      jax.eval_shape(lambda t: model.init(jax.random.PRNGKey(0), t), tokens)['params'])
  folders = (folder,) if folder else ('checkpoints', 'best') if step is not None else (
      (which, 'checkpoints') if which == 'best' else ('checkpoints',))
  saved = set()
  for folder in folders:
    directory = os.path.join(workdir, folder)
    if not os.path.isdir(directory):
      continue
    steps = manager(directory)
    saved.update(steps.all_steps())
    chosen = steps.latest_step() if step is None else (
        step if step in steps.all_steps() else None)
    if chosen is None:
      continue
    meta = read_meta(steps, chosen)
    check_config_matches(meta['config'], config, directory)
    try:
      params = steps.restore(chosen, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(params_like)))['params']
    except Exception as e:  # Orbax raises many types for a damaged step.
      raise CheckpointError(f'cannot read the parameters of step {chosen} in {directory} '
                            f'({_error_summary(e)})') from None
    return params, {**meta, 'step': chosen}
  if step is not None and saved:
    raise CheckpointError(f'{workdir} has no saved step {step}; it has '
                          f'{", ".join(str(s) for s in sorted(saved))}')
  raise CheckpointError(f'no checkpoint in {workdir} (looked in best/ and checkpoints/)')


def load_for_inference(workdir: str, step: Optional[int] = None):
  """`(model, params, config, meta)` of a workdir's best checkpoint (or its saved `step`),
  with the config it was trained with; `meta['step']` is the step loaded.

  Raises:
    CheckpointError: no usable checkpoint or config in `workdir`.
    factory.ConfigError: a config that does not build a model.
  """
  if not os.path.isdir(workdir):
    raise CheckpointError(f'{workdir} is not a directory')
  config = read_config(workdir)
  params, meta = load_params(workdir, config, step=step)
  return factory.make_model(config), params, config, meta
