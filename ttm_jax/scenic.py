"""Parameters of Scenic's Token Turing Machine <-> this port's, both ways.

Scenic (`scenic/projects/token_turing/model.py`) lets Flax name its submodules
(`TokenLearnerModuleV11_0` for the read, `Encoder_0` or `MixerBlock_{l}` for the processing
unit, `TokenLearnerModuleV11_1` or `TokenAddEraseWrite_0` for the write) and keeps position
embeddings and learned queries as `[1, N, d]`; this port nests them by role (`read/`,
`process/`, `write/`) and keeps them as `[N, d]`. The conversion is a renaming plus that
reshape: the values are the same, and with the same configuration `ttm.TokenTuringMachineUnit`
and `ttm.TokenTuringMachineEncoder` compute what Scenic's modules compute (`docs/scenic.md`).

Both directions take the `params` collection of a unit (Scenic's `TokenTuringMachineUnit`, or
ours) or of an encoder (Scenic's `TokenTuringMachineEncoder`, whose unit is `unit_function`;
ours, whose unit is `unit`), for the memory modes 'TL', 'TL-MHA' and 'TL-AddErase' (or
'TL-AddErase-NTM', which has the same parameters) and every processing unit, or of the
simplified unit (`TokenTuringMachineSimpleUnit`; ours computes Scenic's with
`scenic_split=True`). The memory mode, processing unit, number of layers and position
embeddings are read from the tree itself.
Pass `like` (a parameter tree of the target module, e.g. from `jax.eval_shape` of its `init`)
to check that the result fits it, name for name and shape for shape.
"""

import os
import pathlib
from typing import Dict, List, Optional, Tuple

import flax
import jax.numpy as jnp

# The leaves that Scenic keeps with a leading axis of 1 (position embeddings, learned queries):
# our names, then Scenic's.
_BATCHED_LEAVES = ('embedding', 'queries', 'pos_embed')
_SCENIC_BATCHED_LEAVES = ('pos_embedding', 'tokens')
_SCENIC_SUMMARIZERS = {'mlp': 'TokenLearnerModuleV11', 'mha': 'TokenLearnerMHA'}
_SCENIC_WRITE_POS_EMBED = 'write_pos_embed/pos_embedding'

# The Scenic source `tests/test_scenic.py` compares this port with (docs/scenic.md): a
# checkout of SCENIC_URL at SCENIC_COMMIT, found at $TTM_SCENIC_DIR, else beside the repository.
SCENIC_URL = 'https://github.com/google-research/scenic'
SCENIC_COMMIT = '4a38d475ee89cb821078c0e2bf2065ee030e1535'
SCENIC_DIR_VARIABLE = 'TTM_SCENIC_DIR'
DEFAULT_SCENIC_DIR = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'reference' / 'scenic'
FETCH_COMMAND = (f'git clone {SCENIC_URL} scenic && git -C scenic checkout {SCENIC_COMMIT} && '
                 f'export {SCENIC_DIR_VARIABLE}=$PWD/scenic')


def scenic_source() -> Tuple[pathlib.Path, str]:
  """`(folder, problem)`: the Scenic checkout to compare with ($TTM_SCENIC_DIR, else
  `../shared/reference/scenic` beside the repository), and '' if it holds Scenic's
  `scenic/projects/token_turing/model.py`, else why not and how to fetch it (one line)."""
  given = os.environ.get(SCENIC_DIR_VARIABLE)
  folder = pathlib.Path(given).expanduser() if given else DEFAULT_SCENIC_DIR
  if (folder / 'scenic' / 'projects' / 'token_turing' / 'model.py').is_file():
    return folder, ''
  where = (f'{SCENIC_DIR_VARIABLE}={given}' if given else
           f'{SCENIC_DIR_VARIABLE} is not set, and {DEFAULT_SCENIC_DIR}')
  return folder, (f'no Scenic source to compare with: {where} holds no '
                  'scenic/projects/token_turing/model.py. Fetch Scenic at the pinned commit '
                  f'{SCENIC_COMMIT[:12]} ({SCENIC_URL}): `{FETCH_COMMAND}` (docs/scenic.md)')


class ParameterTreeError(ValueError):
  """A parameter tree that does not fit; the message names the first path that does not."""


def _token_learner(scenic: str, ours: str) -> List[Tuple[str, str]]:
  """Scenic's `TokenLearnerModuleV11` <-> our `summarize.TokenLearner`."""
  return [(f'{scenic}/LayerNorm_0', f'{ours}/norm'),
          (f'{scenic}/token_masking/Dense_0', f'{ours}/hidden'),
          (f'{scenic}/token_masking/Dense_1', f'{ours}/scores')]


def _token_learner_mha(scenic: str, ours: str) -> List[Tuple[str, str]]:
  """Scenic's `TokenLearnerMHA` <-> our `summarize.TokenLearnerMHA`."""
  return [(f'{scenic}/tokens', f'{ours}/queries'), (f'{scenic}/attn', f'{ours}/attention')]


def _mlp_block(scenic: str, ours_hidden: str, ours_out: str) -> List[Tuple[str, str]]:
  """Scenic's `MlpBlock` (two Dense layers) <-> two of our Dense layers."""
  return [(f'{scenic}/Dense_0', ours_hidden), (f'{scenic}/Dense_1', ours_out)]


def _summarizer(kind: str, scenic: str, ours: str) -> List[Tuple[str, str]]:
  return _token_learner_mha(scenic, ours) if kind == 'mha' else _token_learner(scenic, ours)


def _processing(kind: str, num_layers: int) -> List[Tuple[str, str]]:
  """Scenic's processing unit (at the unit's top level) <-> ours (`process/`)."""
  pairs = []
  if kind == 'transformer':
    pairs.append(('Encoder_0/posembed_input/pos_embedding', 'process/pos_embed'))
    for l in range(num_layers):
      scenic, ours = f'Encoder_0/encoderblock_{l}', f'process/block_{l}'
      pairs += [(f'{scenic}/LayerNorm_0', f'{ours}/attention_norm'),
                (f'{scenic}/MultiHeadDotProductAttention_0', f'{ours}/attention'),
                (f'{scenic}/LayerNorm_1', f'{ours}/mlp_norm')]
      pairs += _mlp_block(f'{scenic}/MlpBlock_0', f'{ours}/mlp/hidden', f'{ours}/mlp/out')
    return pairs + [('Encoder_0/encoder_norm', 'process/norm')]
  if kind == 'mixer':
    for l in range(num_layers):
      scenic, ours = f'MixerBlock_{l}', f'process/block_{l}'
      pairs += [(f'{scenic}/LayerNorm_0', f'{ours}/token_norm'),
                (f'{scenic}/LayerNorm_1', f'{ours}/channel_norm')]
      for mixing in ('token_mixing', 'channel_mixing'):
        pairs += _mlp_block(f'{scenic}/{mixing}', f'{ours}/{mixing}/hidden',
                            f'{ours}/{mixing}/out')
    return pairs + [('LayerNorm_0', 'process/norm')]
  for l in range(num_layers):  # 'mlp'
    pairs.append((f'LayerNorm_{l}', f'process/norm_{l}'))
    pairs += _mlp_block(f'MlpBlock_{l}', f'process/mlp_{l}/hidden', f'process/mlp_{l}/out')
  return pairs + [(f'LayerNorm_{num_layers}', 'process/norm')]


def _erase_add_write() -> List[Tuple[str, str]]:
  """Scenic's `TokenAddEraseWrite_0` <-> our `write/erase_add` (in Scenic's creation order)."""
  pairs = [('TokenAddEraseWrite_0/LayerNorm_0', 'write/erase_add/select_norm')]
  pairs += _mlp_block('TokenAddEraseWrite_0/MlpBlock_0', 'write/erase_add/select_hidden',
                      'write/erase_add/select_out')
  for i, vectors in enumerate(('erase', 'add')):
    ours = f'write/erase_add/{vectors}'
    pairs.append((f'TokenAddEraseWrite_0/LayerNorm_{i + 1}', f'{ours}_norm'))
    for j, mixing in enumerate(('tokens', 'channels')):
      pairs += _mlp_block(f'TokenAddEraseWrite_0/MlpBlock_{2 * i + j + 1}',
                          f'{ours}_{mixing}_hidden', f'{ours}_{mixing}_out')
  return pairs


def _unit_pairs(summarizer: str, erase_add: bool, processing: str, num_layers: int,
                positional: bool) -> List[Tuple[str, Optional[str]]]:
  """(Scenic path prefix, our path prefix) for every part of a unit; None: no counterpart."""
  pairs = []
  if positional:
    pairs.append(('read_pos_embed/pos_embedding', 'read/read_pos_embed/embedding'))
    # Scenic creates a write position embedding in 'TL-AddErase' too, and never uses it.
    pairs.append((_SCENIC_WRITE_POS_EMBED,
                  None if erase_add else 'write/write_pos_embed/embedding'))
  pairs += _summarizer(summarizer, f'{_SCENIC_SUMMARIZERS[summarizer]}_0', 'read/summarize')
  pairs += _processing(processing, num_layers)
  if erase_add:
    return pairs + _erase_add_write()
  return pairs + _summarizer(summarizer, f'{_SCENIC_SUMMARIZERS[summarizer]}_1',
                             'write/summarize')


def _simple_unit_pairs(processing: str, num_layers: int) -> List[Tuple[str, str]]:
  """The pairs for the simplified unit: a TokenLearner over the inputs, the processing unit."""
  return _token_learner('TokenLearnerModuleV11_0', 'summarize') + _processing(processing,
                                                                            num_layers)


def _count(names, prefix: str) -> int:
  return sum(1 for name in names if name.startswith(prefix))


def _scenic_unit_pairs(tree) -> List[Tuple[str, Optional[str]]]:
  """The pairs for a Scenic unit tree, its structure read from the tree."""
  if 'Encoder_0' in tree:
    processing = 'transformer', _count(tree['Encoder_0'], 'encoderblock_')
  elif 'MixerBlock_0' in tree:
    processing = 'mixer', _count(tree, 'MixerBlock_')
  else:
    processing = 'mlp', _count(tree, 'MlpBlock_')
  if not {'read_pos_embed', 'TokenLearnerMHA_0', 'TokenLearnerModuleV11_1',
          'TokenAddEraseWrite_0'} & set(tree):  # No memory read or write: the simplified unit.
    return _simple_unit_pairs(*processing)
  summarizer = 'mha' if 'TokenLearnerMHA_0' in tree else 'mlp'
  return _unit_pairs(summarizer, 'TokenAddEraseWrite_0' in tree, *processing,
                     'read_pos_embed' in tree)


def _port_unit_pairs(tree) -> List[Tuple[str, Optional[str]]]:
  """The pairs for one of our unit trees, its structure read from the tree."""
  read, process, write = (tree.get(part, {}) for part in ('read', 'process', 'write'))
  if 'pos_embed' in process:
    processing = 'transformer', _count(process, 'block_')
  elif 'block_0' in process:
    processing = 'mixer', _count(process, 'block_')
  else:
    processing = 'mlp', _count(process, 'mlp_')
  if 'summarize' in tree:
    return _simple_unit_pairs(*processing)
  summarizer = 'mha' if 'queries' in read.get('summarize', {}) else 'mlp'
  return _unit_pairs(summarizer, 'erase_add' in write, *processing, 'read_pos_embed' in read)


def _flatten(tree) -> Dict[str, object]:
  return {'/'.join(path): value
          for path, value in flax.traverse_util.flatten_dict(dict(tree)).items()}


def _unflatten(flat: Dict[str, object]):
  return flax.traverse_util.unflatten_dict({tuple(path.split('/')): value
                                            for path, value in flat.items()})


def _rename(flat: Dict[str, object], pairs: List[Tuple[str, Optional[str]]],
            target: str) -> Dict[str, object]:
  """Renames every path of `flat` by the (source prefix, target prefix) `pairs`; a target
  prefix of None drops the path.

  Raises ParameterTreeError naming the first path that no pair covers, or the first pair
  that covers no path.
  """
  renamed, used = {}, set()
  for path in sorted(flat):
    matches = [(old, new) for old, new in pairs if path == old or path.startswith(old + '/')]
    if not matches:
      raise ParameterTreeError(f'{path}: no counterpart in {target} TTM unit')
    old, new = matches[0]
    used.add(old)
    if new is not None:
      renamed[new + path[len(old):]] = flat[path]
  for old, _ in pairs:
    if old not in used:
      raise ParameterTreeError(f'{old}: missing from the parameter tree')
  return renamed


def check_fits(params, like) -> None:
  """Raises ParameterTreeError naming the first path where `params` and `like` (a tree of
  arrays or `jax.ShapeDtypeStruct`s) differ in presence or shape."""
  flat, expected = _flatten(params), _flatten(like)
  for path in sorted(set(flat) | set(expected)):
    if path not in flat:
      raise ParameterTreeError(f'{path}: missing (expected shape {expected[path].shape})')
    if path not in expected:
      raise ParameterTreeError(f'{path}: not a parameter of the target module')
    if flat[path].shape != expected[path].shape:
      raise ParameterTreeError(f'{path}: shape {flat[path].shape}, expected '
                               f'{expected[path].shape}')


def _encoder_or_unit(params, unit_key: str):
  """`(unit tree, whether params is an encoder's)`: an encoder's tree holds only its unit."""
  if unit_key not in params:
    return params, False
  for key in sorted(params):
    if key != unit_key:
      raise ParameterTreeError(f'{key}: not a parameter of a TTM encoder')
  return params[unit_key], True


def from_scenic(params, like=None):
  """Scenic's TTM parameters -> this port's.

  Args:
    params: the `params` collection of Scenic's `TokenTuringMachineUnit` or
      `TokenTuringMachineEncoder`.
    like: optional, a tree of our module's parameters (or their shapes) that the result must
      fit.

  Returns:
    The parameters of our `TokenTuringMachineUnit` (or `TokenTuringMachineEncoder`, with
    `memory_init='zeros'`). Scenic's unused write position embedding of 'TL-AddErase' is
    dropped.

  Raises:
    ParameterTreeError: naming the first path that does not fit.
  """
  unit, encoder = _encoder_or_unit(params, 'unit_function')
  renamed = _rename(_flatten(unit), _scenic_unit_pairs(unit), "this port's")
  for path, value in renamed.items():
    if path.split('/')[-1] in _BATCHED_LEAVES:
      if value.shape[0] != 1:
        raise ParameterTreeError(f'{path}: Scenic shape {value.shape}, expected [1, N, d]')
      renamed[path] = value.reshape(value.shape[1:])
  result = _unflatten(renamed)
  result = {'unit': result} if encoder else result
  if like is not None:
    check_fits(result, like)
  return result


def to_scenic(params, like=None):
  """This port's TTM parameters -> Scenic's (the inverse of `from_scenic`).

  Args:
    params: the `params` collection of our `TokenTuringMachineUnit` or
      `TokenTuringMachineEncoder` (memory modes 'TL', 'TL-MHA', 'TL-AddErase',
      'TL-AddErase-NTM'; the full unit, zero initial memory).
    like: optional, a tree of Scenic's module's parameters (or their shapes) that the result
      must fit.

  Returns:
    The parameters of Scenic's module. In 'TL-AddErase' with position embeddings, Scenic's
    unused write position embedding is created as zeros.

  Raises:
    ParameterTreeError: naming the first path that does not fit (a learned initial memory,
      or a part that Scenic does not have).
  """
  if 'initial' in params:
    raise ParameterTreeError('initial/memory: a learned initial memory has no counterpart '
                             'in Scenic, whose memory starts at zeros')
  unit, encoder = _encoder_or_unit(params, 'unit')
  pairs = [(new, old) for old, new in _port_unit_pairs(unit) if new is not None]
  renamed = _rename(_flatten(unit), pairs, "Scenic's")
  for path, value in renamed.items():
    if path.split('/')[-1] in _SCENIC_BATCHED_LEAVES:
      renamed[path] = value.reshape((1,) + value.shape)
  if 'erase_add' in unit.get('write', {}) and 'read_pos_embed' in unit.get('read', {}):
    read_embed = unit['read']['read_pos_embed']['embedding']  # Shape: [m+n, d].
    process_size = unit['read']['summarize']['scores']['kernel'].shape[-1]
    renamed[_SCENIC_WRITE_POS_EMBED] = jnp.zeros(
        (1, read_embed.shape[0] + process_size, read_embed.shape[1]), read_embed.dtype)
  result = _unflatten(renamed)
  result = {'unit_function': result} if encoder else result
  if like is not None:
    check_fits(result, like)
  return result
