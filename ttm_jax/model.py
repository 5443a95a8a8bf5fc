"""The multiplication model: token embeddings, the TTM encoder, and the output head.

`tokens [B, S, n] -> embed [B, S, n, d] -> TTM encoder [B, S, r, d] -> mean over r ->
head -> logits [B, S, 13]`. `step` is the same model on one step with the memory handed in and
out (streaming inference), sharing every parameter with `__call__`.

Where a token sits (`positions`): 'slots' adds an embedding per input slot, so n is fixed.
'places' (issue 36; Abacus embeddings, McLeish et al. 2024) adds an embedding of the token's
role (a-digit, ×, b-digit, EOS, previous answer) and, to operand digits, one of their place
value (0 = units), so that the same digit pair meets at the same place whatever the
operands' lengths: a problem of any length up to `max_places` is read, with n = 2 * digits + 3.
Operand slots that hold padding are left out of the memory's read and write (`input_mask`),
so a problem's answer does not depend on the length it was padded to, and the TTM's read and
write position embeddings cover the memory (and the write's outputs) only: the inputs say
where they sit by their own embeddings, and an embedding per input slot would tie the
parameters to n, the trained length (`ttm.TokenTuringMachineUnit.input_positions`). A training example's
place offset o shifts its place indices by o and its step indices by 2o (the units digits of
both operands then meet at step 2o), so that training on short operands trains the
embeddings of the higher places too. With `coupled` (position coupling, Cho et al. 2024, made
per step), a b digit's place is instead the place of the a digit it pairs with at this step:
at step t, b_j gets place t - j, so a_i and b_(t-i), whose product is in answer digit t, carry
the same place embedding (a b digit with no partner, j > t, gets a place of its own).
With `product_steps` ('places', 'lsb'), answer step t is K TTM steps, K = (n - 3) / 2 the
operands' width: TTM step k marks the digits a_k and b_(t-k) where both are digits
(`pair_embed`) and says whether it starts the answer digit (`substep_embed`), so the memory can
take in one product per TTM step, as a written scratchpad would; the answer is read from the
last one. With `skip_unpaired` a later TTM step without a pair keeps the memory as it was and
the answer is read from the last one that ran, so an answer step takes in exactly its products
whatever the width the problem is written at.

Mixed precision (`compute_dtype='bfloat16'`): the TTM encoder computes in bfloat16 on
bfloat16 copies of its float32 parameters; embeddings, the memory carried between steps, the
output head, the logits and every parameter stay float32.
"""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ttm_jax import tokens as tok
from ttm_jax.dropout import Dropout
from ttm_jax.ttm import TokenTuringMachineEncoder

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
ENCODER_METHODS = ('__call__', 'initial_memory', 'step', 'scan_steps')
DIGIT_MASK_BIAS = -1000.0  # Added to digit logits after the first predicted EOS.
EOS_BOOST = 1000.0  # Added to the EOS logit after the first predicted EOS.
HEAD_WIDTHS = (128, 64)  # Hidden widths of the output head.
POSITIONS = ('slots', 'places')
ROLES = ('a', 'times', 'b', 'eos', 'answer')  # The roles of a step's tokens in 'places'.


def operand_roles(roles: np.ndarray) -> np.ndarray:
  """Where `roles` (indices into ROLES) are operand digits: bool, same shape."""
  return (roles == ROLES.index('a')) | (roles == ROLES.index('b'))


def place_layout(tokens_per_step: int, digit_order: str) -> Tuple[np.ndarray, np.ndarray]:
  """Role (index into ROLES) and place value of each token of a 'places' step,
  `a×b<EOS><answer>` with both operands in aligned slots of `(n - 3) / 2` digits.

  Returns:
    `(roles [n], places [n])` int32; the place is 0 where the token is not an operand digit.
  """
  digits = (tokens_per_step - 3) // 2
  operand = np.arange(digits) if digit_order == 'lsb' else np.arange(digits)[::-1]
  roles = np.repeat(np.arange(len(ROLES)), [digits, 1, digits, 1, 1])
  places = np.concatenate([operand, [0], operand, [0, 0]])
  return roles.astype(np.int32), places.astype(np.int32)


class OutputHead(nn.Module):
  """`[..., d]` -> 13 logits: two GELU Dense layers (128, 64), then a digit head (10 digits +
  "no digit") and an EOS head, combined over the vocabulary: digits 0-9 from the digit head,
  EOS from the EOS head, and the "no digit" logit for the two non-answer tokens (× and PAD).

  Attributes:
    dropout_rate: dropout after each hidden layer.
  """
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = nn.gelu(nn.Dense(HEAD_WIDTHS[0], name='pre_output1')(x))
    x = Dropout(self.dropout_rate)(x, train)
    x = nn.gelu(nn.Dense(HEAD_WIDTHS[1], name='pre_output2')(x))
    x = Dropout(self.dropout_rate)(x, train)
    digits = nn.Dense(11, name='digit_head')(x)  # Shape: [..., 11].
    eos = nn.Dense(1, name='eos_head')(x)  # Shape: [..., 1].
    no_digit = digits[..., 10:]
    return jnp.concatenate([digits[..., :10], no_digit, eos, no_digit], axis=-1)


def cast_floating(tree, dtype):
  """`tree` with its floating-point leaves cast to `dtype`."""
  return jax.tree_util.tree_map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def detect_eos(logits: jnp.ndarray) -> jnp.ndarray:
  """Where the EOS head's probability (sigmoid of the EOS logit) exceeds 0.5: `[..., S]`."""
  return jax.nn.sigmoid(logits[..., tok.EOS_TOKEN]) > 0.5


def after_first_eos(has_eos: jnp.ndarray) -> jnp.ndarray:
  """True at the steps strictly after the first True along the last axis: `[B, S]`."""
  seen = jnp.cumsum(has_eos.astype(jnp.int32), axis=-1)
  return (seen - has_eos.astype(jnp.int32)) > 0


def apply_eos_masking(logits: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """Where `mask` `[...]` holds: digit logits += -1000 and the EOS logit += +1000."""
  bias = jnp.zeros(tok.VOCAB_SIZE).at[jnp.array(tok.DIGIT_TOKENS)].set(DIGIT_MASK_BIAS)
  bias = bias.at[tok.EOS_TOKEN].set(EOS_BOOST)
  return logits + mask[..., None].astype(logits.dtype) * bias


def mask_after_answer_eos(logits: jnp.ndarray, answer_start: int) -> jnp.ndarray:
  """EOS-masks `logits [B, S, 13]` after the first EOS predicted at or after `answer_start`."""
  answering = jnp.arange(logits.shape[1]) >= answer_start
  return apply_eos_masking(logits, after_first_eos(detect_eos(logits) & answering))


class MultiplicationTTM(nn.Module):
  """A TTM that reads a multiplication problem step by step and writes the product.

  Attributes:
    hidden_size: d, the token width.
    tokens_per_step: n, input tokens per step ('slots'; in 'places' any n of the layout).
    max_steps: the step-embedding table size (0: no step embedding).
    positions: 'slots' or 'places' (module docstring).
    max_places: the place-value table size ('places').
    digit_order: 'lsb' or 'msb', the operands' digit order ('places': where each place is).
    coupled: 'places' with a b digit at the place of its a partner of the step (module
      docstring; 'lsb' only).
    product_steps, skip_unpaired: one TTM step per digit product; skipping those without one
      (module docstring).
    process_size, memory_size, memory_mode, processing_unit, num_layers, mlp_dim, num_heads,
      use_positional_embedding, memory_init, simple_unit, scan, scan_unroll, remat: the TTM
      encoder's (`ttm.py`).
    dropout_rate: dropout everywhere.
    token_embed_stddev: initial scale of the token embeddings (the position and step
      embeddings start at about 1/sqrt(d)).
    compute_dtype: 'float32', or 'bfloat16' for the encoder's arithmetic (module docstring).
  """
  hidden_size: int = 128
  tokens_per_step: int = 11
  max_steps: int = 11
  positions: str = 'slots'
  max_places: int = 0
  digit_order: str = 'lsb'
  coupled: bool = False
  product_steps: bool = False
  skip_unpaired: bool = False
  process_size: int = 16
  memory_size: int = 96
  memory_mode: str = 'TL'
  processing_unit: str = 'transformer'
  num_layers: int = 4
  mlp_dim: int = 512
  num_heads: int = 4
  use_positional_embedding: bool = True
  memory_init: str = 'learned'
  simple_unit: bool = False
  scan: bool = True
  scan_unroll: int = 1
  remat: bool = False
  dropout_rate: float = 0.1
  token_embed_stddev: float = 0.01
  compute_dtype: str = 'float32'

  def setup(self):
    self.token_embed = nn.Embed(
        tok.VOCAB_SIZE, self.hidden_size,
        embedding_init=nn.initializers.normal(stddev=self.token_embed_stddev))
    if self.positions == 'slots':
      self.pos_embed = nn.Embed(self.tokens_per_step, self.hidden_size)
    else:
      self.role_embed = nn.Embed(len(ROLES), self.hidden_size)
      # (Coupled: one more row, the place of a b digit with no partner at the step.)
      self.place_embed = nn.Embed(self.max_places + self.coupled, self.hidden_size)
    if self.product_steps:  # The mark of a TTM step's pair; the answer digit's first or later.
      self.pair_embed, self.substep_embed = (nn.Embed(k, self.hidden_size) for k in (1, 2))
    if self.max_steps:
      self.step_embed = nn.Embed(self.max_steps, self.hidden_size)
    self.embed_norm = nn.LayerNorm()
    self.embed_dropout = Dropout(self.dropout_rate)
    encoder = TokenTuringMachineEncoder
    if self.compute_dtype != 'float32' and not self.is_initializing():
      dtype = COMPUTE_DTYPES[self.compute_dtype]  # (Initialization creates float32 params.)
      encoder = nn.map_variables(encoder, 'params', lambda v: cast_floating(v, dtype),
                                 methods=ENCODER_METHODS)
    self.encoder = encoder(
        process_size=self.process_size, memory_size=self.memory_size,
        memory_mode=self.memory_mode, processing_unit=self.processing_unit,
        num_layers=self.num_layers, mlp_dim=self.mlp_dim, num_heads=self.num_heads,
        use_positional_embedding=self.use_positional_embedding,
        dropout_rate=self.dropout_rate, memory_init=self.memory_init,
        simple_unit=self.simple_unit, scan=self.scan, scan_unroll=self.scan_unroll,
        remat=self.remat, input_positions=self.positions == 'slots')
    self.head = OutputHead(self.dropout_rate)

  def embed(self, tokens: jnp.ndarray, steps: jnp.ndarray, train: bool = False,
            offsets: jnp.ndarray = None) -> jnp.ndarray:
    """Token + position (+ step) embeddings, LayerNorm, dropout.

    Args:
      tokens: `[B, ..., n]` int tokens.
      steps: step index of each row of tokens, broadcastable to `tokens.shape[:-1]`.
      train: enables dropout.
      offsets: `[B]` place offsets ('places'; None: 0).

    Returns:
      `[B, ..., n, d]`; with `product_steps`, `[B, ..., K, n, d]`, one row per TTM step.
    """
    if self.product_steps:  # Shape: [..., K, n], before the offsets shift places and steps.
      pair = self.product_pairs(tokens, jnp.broadcast_to(steps, tokens.shape[:-1]))
    if self.positions == 'slots':
      x = self.token_embed(tokens) + self.pos_embed(jnp.arange(tokens.shape[-1]))
    else:
      roles, places = place_layout(tokens.shape[-1], self.digit_order)
      if self.coupled:  # b_j at step t: place t - j, its a partner's. Shape: [..., n].
        step_of_token = jnp.broadcast_to(steps, tokens.shape[:-1])[..., None]
        places = jnp.where(roles == ROLES.index('b'), step_of_token - places, places)
        unpaired = places < 0  # No a digit pairs with it at this step.
      if offsets is not None:  # Shape: [B, 1, ..., 1], as tokens.
        offsets = offsets.reshape(offsets.shape + (1,) * (tokens.ndim - 1))
        places, steps = places + offsets, steps + 2 * offsets[..., 0]
      if self.coupled:  # The unpaired share one place of their own, past all the others.
        places = jnp.where(unpaired, self.max_places, places)
      digit = jnp.asarray(operand_roles(roles))[:, None]  # Shape: [n, 1].
      x = (self.token_embed(tokens) + self.role_embed(roles)
           + jnp.where(digit, self.place_embed(places), 0.0))
    if self.max_steps:
      steps = jnp.broadcast_to(steps, tokens.shape[:-1])
      x = x + self.step_embed(steps)[..., None, :]
    if self.product_steps:
      later = (jnp.arange(pair.shape[-2]) > 0).astype(jnp.int32)  # Shape: [K].
      x = (x[..., None, :, :] + self.substep_embed(later)[:, None, :]
           + jnp.where(pair[..., None], self.pair_embed(jnp.zeros(1, jnp.int32)), 0.0))
    return self.embed_dropout(self.embed_norm(x), train)

  def product_pairs(self, tokens: jnp.ndarray, steps: jnp.ndarray) -> jnp.ndarray:
    """Where TTM step k of answer step t has its pair a_k, b_(t-k), both digits.

    Args:
      tokens: `[..., n]` int tokens.
      steps: `[...]`, each row's answer step t.

    Returns:
      `[..., K, n]` bool, K = (n - 3) / 2 TTM steps per answer step.
    """
    roles, places = place_layout(tokens.shape[-1], self.digit_order)
    k = jnp.arange((tokens.shape[-1] - 3) // 2)[:, None]  # Shape: [K, 1].
    digit = (tokens != tok.PAD_TOKEN)[..., None, :]  # Shape: [..., 1, n].
    a = (roles == ROLES.index('a')) & (places == k) & digit
    b = (roles == ROLES.index('b')) & (places == steps[..., None, None] - k) & digit
    return (a | b) & a.any(-1, keepdims=True) & b.any(-1, keepdims=True)

  def active_steps(self, tokens: jnp.ndarray, steps: jnp.ndarray):
    """With `skip_unpaired`, which TTM steps update the memory: the first of each answer step
    and those with a digit pair, `[..., K]` bool (`tokens [..., n]`, `steps [...]`); else
    None (all)."""
    if not self.skip_unpaired:
      return None
    return self.product_pairs(tokens, steps).any(-1).at[..., 0].set(True)  # The first runs.

  def input_mask(self, tokens: jnp.ndarray):
    """`[..., n]` -> where the encoder reads a token ('places': all but the padding of the
    operand slots), `[..., n]` bool; None in 'slots' (every token is read)."""
    if self.positions == 'slots':
      return None
    roles, _ = place_layout(tokens.shape[-1], self.digit_order)
    return ~(operand_roles(roles) & (tokens == tok.PAD_TOKEN))

  def logits(self, outputs: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """TTM outputs `[..., r, d]` -> vocabulary logits `[..., 13]` (mean over the r tokens)."""
    return self.head(outputs.mean(axis=-2), train)

  def initial_memory(self, batch_size: int) -> jnp.ndarray:
    """`[batch_size, m, d]` float32."""
    return self.encoder.initial_memory(batch_size, self.hidden_size).astype(jnp.float32)

  def step(self, memory: jnp.ndarray, step_tokens: jnp.ndarray, step_index: jnp.ndarray,
           train: bool = False) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """One streaming step (with `product_steps`, its K TTM steps).

    Args:
      memory: `[B, m, d]`.
      step_tokens: `[B, n]` int tokens of this step.
      step_index: int scalar or `[B]`, the step's index in its sequence.
      train: enables dropout.

    Returns:
      `(new_memory [B, m, d], logits [B, 13])` (no EOS masking: that needs the history,
      see `streaming.py`).
    """
    x = self.embed(step_tokens, step_index, train).astype(COMPUTE_DTYPES[self.compute_dtype])
    mask = self.input_mask(step_tokens)
    if not self.product_steps:
      x = x[:, None]  # One TTM step.
    active = self.active_steps(step_tokens, jnp.broadcast_to(step_index, step_tokens.shape[:1]))
    for k in range(x.shape[1]):  # The answer is the last (active) TTM step's; the same mask.
      step_active = None if active is None else active[:, k]
      memory, step_outputs = self.encoder.step(memory, x[:, k], train, mask, step_active)
      outputs = step_outputs if k == 0 or active is None else jnp.where(
          step_active[:, None, None], step_outputs, outputs)
    self.sow('intermediates', 'outputs', outputs)  # For tracing; free unless mutable.
    return memory, self.logits(outputs, train)

  def __call__(self, inputs: jnp.ndarray, train: bool = False, answer_start: int = 0,
               offsets: jnp.ndarray = None) -> jnp.ndarray:
    """Teacher-forced pass over all steps.

    Args:
      inputs: `[B, S, n]` int tokens.
      train: enables dropout; off, logits after the first predicted EOS are masked.
      answer_start: the first step that predicts an answer token; an EOS predicted before it
        does not count (`Framing.answer_start`).
      offsets: `[B]` place offsets of training examples ('places'; None: 0).

    Returns:
      logits `[B, S, 13]`.
    """
    x = self.embed(inputs, jnp.arange(inputs.shape[1])[None, :], train, offsets)
    x = x.astype(COMPUTE_DTYPES[self.compute_dtype])  # Shape: [B, S, n, d] or [B, S, K, n, d].
    mask = self.input_mask(inputs)
    active = self.active_steps(inputs, jnp.broadcast_to(jnp.arange(inputs.shape[1]),
                                                        inputs.shape[:2]))  # [B, S, K] or None.
    flat = lambda y: None if y is None else y.reshape((y.shape[0], -1) + y.shape[3:])
    if self.product_steps:  # The K TTM steps of each answer step in a row: [B, S * K, n, d].
      mask = jnp.repeat(mask[:, :, None], x.shape[2], axis=2)  # The same tokens at each.
      x, mask = flat(x), flat(mask)
    memory = self.initial_memory(inputs.shape[0])
    outputs = self.encoder.scan_steps(memory, x, train, mask, flat(active))[1]
    if self.product_steps:  # Each answer step's last (active) TTM step: [B, S, r, d].
      outputs = outputs.reshape(inputs.shape[:2] + (-1,) + outputs.shape[2:])
      if active is None:
        outputs = outputs[:, :, -1]
      else:
        last = outputs.shape[2] - 1 - jnp.argmax(active[..., ::-1], axis=-1)  # Shape: [B, S].
        outputs = jnp.take_along_axis(outputs, last[:, :, None, None, None], axis=2)[:, :, 0]
    logits = self.logits(outputs, train)
    return logits if train else mask_after_answer_eos(logits, answer_start)
