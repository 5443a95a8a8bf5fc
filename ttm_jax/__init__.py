"""ttm_jax: Token Turing Machines in JAX/Flax, trained to multiply integers."""

from ttm_jax.model import MultiplicationTTM
from ttm_jax.ttm import TokenTuringMachineEncoder
from ttm_jax.ttm import TokenTuringMachineSimpleUnit
from ttm_jax.ttm import TokenTuringMachineUnit

__all__ = ['MultiplicationTTM', 'TokenTuringMachineEncoder', 'TokenTuringMachineSimpleUnit',
           'TokenTuringMachineUnit']
