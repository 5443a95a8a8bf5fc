"""ttm_jax: Token Turing Machines in JAX/Flax, trained to multiply integers.

The classes below load on first use, so that importing a light module of the package (such as
`ttm_jax.host_memory`, which may restart the process) does not load JAX.
"""

import importlib

_EXPORTS = {
    'MultiplicationTTM': 'ttm_jax.model',
    'TokenTuringMachineEncoder': 'ttm_jax.ttm',
    'TokenTuringMachineSimpleUnit': 'ttm_jax.ttm',
    'TokenTuringMachineUnit': 'ttm_jax.ttm',
}
__all__ = list(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  return getattr(importlib.import_module(_EXPORTS[name]), name)
