"""The multiplication model: embeddings, output head, EOS masking, step parity, training."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from configs import mult
from ttm_jax import checkpoint as ckpt
from ttm_jax import data
from ttm_jax.curriculum import Curriculum
from ttm_jax import factory
from ttm_jax import losses
from ttm_jax import model as model_lib
from ttm_jax import tokens as tok


@pytest.fixture(scope='module')
def tiny():
  config = mult.get_config('runlocal')
  model = factory.make_model(config)
  framing = factory.make_framing(config)
  batch = data.MultiplicationDataset(16, 0, Curriculum(stage=2), framing).generate_batch()
  params = model.init({'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(1)},
                      batch['inputs'])['params']
  return model, framing, batch, params


def test_paper_model_parameter_count_and_layers():
  config = mult.get_config('paper')
  config.task.max_digits = 4  # n = 11 tokens per step, 9 steps.
  model = factory.make_model(config)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             jnp.zeros((1, 1, 11), jnp.int32)))['params']
  assert sum(x.size for x in jax.tree_util.tree_leaves(params)) == 891452
  head = params['head']
  assert head['pre_output1']['kernel'].shape == (128, 128)
  assert head['pre_output2']['kernel'].shape == (128, 64)
  assert head['digit_head']['kernel'].shape == (64, 11)
  assert head['eos_head']['kernel'].shape == (64, 1)
  assert params['token_embed']['embedding'].shape == (13, 128)
  assert params['encoder']['initial']['memory'].shape == (96, 128)


@pytest.mark.parametrize('arg, stddev', [('paper', 0.01), ('runlocal', 0.125)])
def test_token_embedding_init(arg, stddev):
  # The checklist's normal(0.01) in the paper setting; the default starts the token embeddings
  # at the scale of the position and step embeddings (about 1/sqrt(d)).
  config = mult.get_config(arg)
  model = factory.make_model(config)
  params = jax.jit(lambda: model.init(jax.random.PRNGKey(0),
                                      jnp.zeros((1, 1, 13), jnp.int32)))()['params']
  embedding = params['token_embed']['embedding']
  assert embedding.shape == (13, config.model.hidden_size)
  assert float(jnp.std(embedding)) == pytest.approx(stddev, rel=0.3)


def test_logits_shape_train_and_eval(tiny):
  model, _, batch, params = tiny
  logits = model.apply({'params': params}, batch['inputs'])
  assert logits.shape == batch['inputs'].shape[:2] + (13,)
  trained = model.apply({'params': params}, batch['inputs'], True,
                        rngs={'dropout': jax.random.PRNGKey(2)})
  assert trained.shape == logits.shape


def test_output_head_combines_digit_and_eos_heads():
  head = model_lib.OutputHead()
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 16))
  params = head.init(jax.random.PRNGKey(1), x)
  logits = head.apply(params, x)
  assert logits.shape == (2, 5, 13)
  np.testing.assert_array_equal(logits[..., tok.TIMES_TOKEN], logits[..., tok.PAD_TOKEN])


def test_eos_detection_and_masking():
  logits = jnp.zeros((1, 4, 13))
  logits = logits.at[0, 1, tok.EOS_TOKEN].set(3.0)  # sigmoid(3) > 0.5 at step 1.
  has_eos = model_lib.detect_eos(logits)
  np.testing.assert_array_equal(has_eos, [[False, True, False, False]])
  after = model_lib.after_first_eos(has_eos)
  np.testing.assert_array_equal(after, [[False, False, True, True]])
  masked = model_lib.apply_eos_masking(logits, after)
  np.testing.assert_array_equal(masked[0, :2], logits[0, :2])
  np.testing.assert_array_equal(masked[0, 2:, :10], -1000.0)
  np.testing.assert_array_equal(masked[0, 2:, tok.EOS_TOKEN], 1000.0)
  np.testing.assert_array_equal(masked[0, 2:, tok.PAD_TOKEN], 0.0)


def test_eval_masks_after_eos_and_train_does_not(tiny):
  model, _, batch, params = tiny
  eos_bias = params['head']['eos_head']['bias']
  forced = jax.tree_util.tree_map(lambda x: x, params)
  forced['head']['eos_head']['bias'] = eos_bias + 50.0  # EOS predicted everywhere.
  evaluated = model.apply({'params': forced}, batch['inputs'])
  assert np.all(np.asarray(evaluated[:, 1:, :10]) < -500)
  trained = model.apply({'params': forced}, batch['inputs'], True,
                        rngs={'dropout': jax.random.PRNGKey(0)})
  assert np.all(np.asarray(trained[:, 1:, :10]) > -500)


def test_step_reproduces_the_teacher_forced_pass(tiny):
  model, _, batch, params = tiny
  unmasked = []
  memory = model.apply({'params': params}, 16, method=model.initial_memory)
  for t in range(batch['inputs'].shape[1]):
    memory, step_logits = model.apply({'params': params}, memory, batch['inputs'][:, t], t,
                                      method=model.step)
    unmasked.append(step_logits)
  unmasked = jnp.stack(unmasked, 1)
  expected = model_lib.apply_eos_masking(
      unmasked, model_lib.after_first_eos(model_lib.detect_eos(unmasked)))
  np.testing.assert_allclose(model.apply({'params': params}, batch['inputs']), expected,
                             atol=1e-5)


def test_overfits_one_batch(tiny):
  model, _, batch, params = tiny
  tx = optax.adam(3e-3)
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(lambda p: losses.compute_total_loss(
        model.apply({'params': p}, batch['inputs']), batch['targets']))(params)
    updates, state = tx.update(grads, state)
    return optax.apply_updates(params, updates), state, loss

  first = None
  for _ in range(150):
    params, state, loss = step(params, state)
    first = first if first is not None else float(loss)
  assert float(loss) < 0.3 * first


@pytest.mark.slow  # About a minute of compiling.
def test_bfloat16_compute_keeps_float32_params_memory_and_logits(tiny):
  # The encoder computes in bfloat16 on bfloat16 copies of the same float32 parameters.
  model, _, batch, params = tiny
  config = mult.get_config('runlocal')
  config.model.compute_dtype = 'bfloat16'
  bf16 = factory.make_model(config)
  bf16_params = jax.eval_shape(lambda: bf16.init(jax.random.PRNGKey(0), batch['inputs']))
  assert jax.tree_util.tree_structure(bf16_params['params']) == \
      jax.tree_util.tree_structure(params)
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(bf16_params))
  forward_half = jax.jit(lambda p: bf16.apply({'params': p}, batch['inputs']))
  forward_full = jax.jit(lambda p: model.apply({'params': p}, batch['inputs']))
  assert 'bf16' in forward_half.lower(params).as_text()
  assert 'bf16' not in forward_full.lower(params).as_text()

  full, half = forward_full(params), forward_half(params)
  assert half.dtype == jnp.float32
  # Same predictions up to bfloat16 rounding (8 mantissa bits: ~1% relative error).
  np.testing.assert_allclose(half, full, atol=0.1 * float(jnp.abs(full).max()))

  @jax.jit
  def one_step(p):
    memory = bf16.apply({'params': p}, 16, method=bf16.initial_memory)
    return bf16.apply({'params': p}, memory, batch['inputs'][:, 0], 0, method=bf16.step)[0]
  assert one_step(params).dtype == jnp.float32

  def loss(p):
    return losses.compute_total_loss(bf16.apply({'params': p}, batch['inputs'], train=True),
                                     batch['targets'])
  grads = jax.jit(jax.grad(loss))(params)
  assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree_util.tree_leaves(grads))


def test_slots_model_computes_what_it_did_before_places_existed():
  # Numbers from the commit before 'places' (3777e49), for a fixed seed and the shipped
  # checkpoint: the default representation is unchanged (parameters, logits, answers).
  config = mult.get_config('runlocal')
  model, framing = factory.make_model(config), factory.make_framing(config)
  batch = data.MultiplicationDataset(8, 0, Curriculum(stage=7), framing).generate_batch()
  assert int(batch['inputs'].sum()) == 6406 and 'offsets' not in batch
  params = model.init({'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(1)},
                      batch['inputs'])['params']
  assert float(sum(jnp.abs(x).sum() for x in jax.tree_util.tree_leaves(params))) == \
      pytest.approx(3390.843017578125, rel=1e-6)
  logits = model.apply({'params': params}, batch['inputs'])
  assert float(logits.sum()) == pytest.approx(-575995.875, rel=1e-5)
  np.testing.assert_allclose(logits[0, 0, :5], [-0.12686151, -0.2371674, 0.22077101,
                                                -0.07410058, 0.13598229], atol=1e-4)
  shipped = mult.get_config()
  params, _ = ckpt.load_params('checkpoints/mult', shipped)
  inputs = factory.make_framing(shipped).encode(np.array([92, 1234, 7]),
                                                np.array([98, 5678, 8]), 4)['inputs']
  logits = factory.make_model(shipped).apply({'params': params}, inputs)
  np.testing.assert_allclose(logits[1, 0, :5], [-47.015152, -225.16331, 55.558094, -232.21614,
                                                -50.506222], rtol=1e-4)
  np.testing.assert_array_equal(logits.argmax(-1), [[6, 1, 0, 9, 11, 11, 11, 11, 11],
                                                    [2, 5, 6, 6, 0, 0, 7, 11, 11],
                                                    [6, 5, 11, 11, 11, 11, 11, 11, 11]])


def _initialized(arg: str):
  """`(model, framing, params)` of `configs/mult.py:<arg>`, initialized."""
  config = mult.get_config(arg)
  model, framing = factory.make_model(config), factory.make_framing(config)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1, 7), jnp.int32))['params']
  return model, framing, params


@pytest.fixture(scope='module')
def places():
  return _initialized('runlocal,places')


def test_places_parameters_do_not_depend_on_the_input_length(places):
  model, framing, params = places
  shapes = lambda n: jax.tree_util.tree_map(jnp.shape, jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1, n), jnp.int32)))['params'])
  assert shapes(7) == shapes(27) == jax.tree_util.tree_map(jnp.shape, params)
  assert 'pos_embed' not in params
  assert params['place_embed']['embedding'].shape[0] == 12 + 6  # max_digits + place_offset.
  assert params['step_embed']['embedding'].shape[0] == framing.num_steps(12) + 2 * 6
  unit = params['encoder']['unit']
  assert unit['read']['read_pos_embed']['embedding'].shape == (8, 32)  # m only.
  assert unit['write']['write_pos_embed']['embedding'].shape == (8 + 4, 32)  # m + r.


@pytest.mark.parametrize('arg', ['runlocal', 'runlocal,places', 'runlocal,coupled'])
def test_a_memory_less_model_has_no_empty_parameter_and_saves(arg, tmp_path):
  # A memory-less 'places' model created a read position embedding over its m = 0 memory
  # tokens, an array of size 0, which orbax refuses to save: its first checkpoint failed.
  config = mult.get_config(arg)
  config.model.memory_mode = 'none'
  model, framing = factory.make_model(config), factory.make_framing(config)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1, framing.tokens_per_step),
                                                       jnp.int32))['params']
  assert all(leaf.size for leaf in jax.tree_util.tree_leaves(params))
  saver = ocp.StandardCheckpointer()
  saver.save(tmp_path / 'params', params)
  saver.wait_until_finished()


def test_places_answer_does_not_depend_on_the_length_it_is_written_at(places):
  model, framing, params = places
  a, b = np.array([123, 7, 4567, 30]), np.array([45, 8, 12, 1005])
  short = model.apply({'params': params}, framing.encode(a, b, 4)['inputs'])
  padded = framing.encode(a, b, 7)['inputs']
  assert padded.shape[-1] == 17 and short.shape[1] == 9
  np.testing.assert_allclose(model.apply({'params': params}, padded)[:, :9], short, atol=1e-5)
  # The mask is what makes it so: the same model reading the padding answers otherwise.
  def raw_logits(module, inputs, masked):
    x = module.embed(inputs, jnp.arange(inputs.shape[1])[None])
    mask = module.input_mask(inputs) if masked else None
    return module.logits(module.encoder.scan_steps(module.initial_memory(len(inputs)), x,
                                                   False, mask)[1])
  short_raw = model.apply({'params': params}, framing.encode(a, b, 4)['inputs'], True,
                          method=raw_logits)
  padded_raw = lambda masked: model.apply({'params': params}, padded, masked,
                                          method=raw_logits)[:, :9]
  np.testing.assert_allclose(padded_raw(True), short_raw, atol=1e-5)
  assert float(jnp.abs(padded_raw(False) - short_raw).max()) > 1e-3


def test_places_embedding_is_token_role_place_and_step(places):
  model, framing, params = places
  tokens = jnp.asarray(framing.encode(np.array([52, 3]), np.array([7, 61]), 2)['inputs'])
  offsets = jnp.array([0, 3])
  x = model.apply({'params': params}, tokens, jnp.arange(5)[None], offsets=offsets,
                  method=model.embed)
  embedding = lambda name, index: params[name]['embedding'][index]
  roles, places_ = model_lib.place_layout(7, 'lsb')
  b, t = 1, 2  # Example 1 (offset 3), step 2: token 4 is b's tens digit, 6 (place 1).
  assert (roles[4], places_[4], int(tokens[b, t, 4])) == (model_lib.ROLES.index('b'), 1, 6)
  raw = (embedding('token_embed', 6) + embedding('role_embed', roles[4])
         + embedding('place_embed', 1 + 3) + embedding('step_embed', t + 2 * 3))
  norm = nn.LayerNorm().apply({'params': params['embed_norm']}, raw)
  np.testing.assert_allclose(x[b, t, 4], norm, atol=1e-5)
  # The × token has no place embedding.
  raw = (embedding('token_embed', tok.TIMES_TOKEN) + embedding('role_embed', roles[2])
         + embedding('step_embed', t + 2 * 3))
  np.testing.assert_allclose(
      x[b, t, 2], nn.LayerNorm().apply({'params': params['embed_norm']}, raw), atol=1e-5)


@pytest.mark.parametrize('order', ['lsb', 'msb'])
def test_place_layout_gives_each_digit_its_significance(order):
  framing = data.Framing(12, 'problem', order, 'aligned', 'places')
  inputs = framing.encode(np.array([4021]), np.array([56]), 4)['inputs'][0, 0]
  roles, places_ = model_lib.place_layout(len(inputs), order)
  names = [model_lib.ROLES[r] for r in roles]
  assert names == ['a'] * 4 + ['times'] + ['b'] * 4 + ['eos', 'answer']
  assert inputs[names.index('times')] == tok.TIMES_TOKEN and inputs[9] == tok.EOS_TOKEN
  for role, operand in (('a', 4021), ('b', 56)):
    digits = [(int(t), int(p)) for t, p, n in zip(inputs, places_, names)
              if n == role and t != tok.PAD_TOKEN]
    assert sum(t * 10**p for t, p in digits) == operand


def _eos_masked(raw):
  return model_lib.apply_eos_masking(raw, model_lib.after_first_eos(model_lib.detect_eos(raw)))


def _streamed(model, params, inputs):
  """`inputs [B, S, n]` teacher-forced through `model.step`, a call per step: EOS-masked
  logits `[B, S, 13]`."""
  memory = model.apply({'params': params}, len(inputs), method=model.initial_memory)
  raw = []
  for t in range(inputs.shape[1]):
    memory, step_logits = model.apply({'params': params}, memory, inputs[:, t], t,
                                      method=model.step)
    raw.append(step_logits)
  return _eos_masked(jnp.stack(raw, 1))


def test_places_step_reproduces_the_teacher_forced_pass(places):
  model, framing, params = places
  inputs = framing.encode(np.array([12, 7, 99, 5]), np.array([34, 8, 99, 1]), 2)['inputs']
  np.testing.assert_allclose(model.apply({'params': params}, inputs),
                             _streamed(model, params, inputs), atol=1e-5)


def test_coupled_places_pair_the_digits_of_each_answer_place():
  config = mult.get_config('runlocal,coupled')
  model, framing = factory.make_model(config), factory.make_framing(config)
  tokens = jnp.asarray(framing.encode(np.array([52]), np.array([61]), 2)['inputs'])
  params = model.init(jax.random.PRNGKey(0), tokens)['params']
  offset = 2
  x = model.apply({'params': params}, tokens, jnp.arange(5)[None], offsets=jnp.array([offset]),
                  method=model.embed)
  embedding = lambda name, index: params[name]['embedding'][index]
  norm = lambda raw: nn.LayerNorm().apply({'params': params['embed_norm']}, raw)
  roles, _ = model_lib.place_layout(7, 'lsb')  # a0 a1 × b0 b1 EOS answer.
  unpaired = params['place_embed']['embedding'].shape[0] - 1
  for t in range(5):
    for slot, j in ((3, 0), (4, 1)):  # b_j: place t - j (its partner a_(t-j)), or unpaired.
      place = t - j + offset if t >= j else unpaired
      raw = (embedding('token_embed', int(tokens[0, t, slot])) + embedding('role_embed', roles[slot])
             + embedding('place_embed', place) + embedding('step_embed', t + 2 * offset))
      np.testing.assert_allclose(x[0, t, slot], norm(raw), atol=1e-5)
    # a_i keeps its own place: a_1 and b_(t-1) share place 1 + offset at every step t >= 1.
    raw = (embedding('token_embed', int(tokens[0, t, 1])) + embedding('role_embed', roles[1])
           + embedding('place_embed', 1 + offset) + embedding('step_embed', t + 2 * offset))
    np.testing.assert_allclose(x[0, t, 1], norm(raw), atol=1e-5)



@pytest.fixture(scope='module')
def products():
  return _initialized('runlocal,products')


def test_product_steps_mark_one_digit_pair_per_ttm_step(products):
  model, framing, params = products
  # 352 × 41 (lsb): a = 2 5 3, b = 1 4 PAD; answer step t, TTM step k marks a_k and b_(t-k).
  tokens = jnp.asarray(framing.encode(np.array([352]), np.array([41]), 3)['inputs'])
  steps = jnp.arange(tokens.shape[1])[None]
  pairs = model.apply({'params': params}, tokens, steps, method=model.product_pairs)
  assert pairs.shape == (1, 7, 3, 9)  # [B, S, K, n]; n = 2 * 3 + 3.
  for t in range(7):
    for k in range(3):
      marked = set(np.flatnonzero(np.asarray(pairs[0, t, k])))
      # Slots: a_0..a_2 = 0..2, × = 3, b_0..b_2 = 4..6; b_2 is padding, b_j for j < 0 none.
      expected = {k, 4 + t - k} if 0 <= t - k <= 1 else set()
      assert marked == expected, (t, k)
  # The embedding: the pair's digits carry the mark, every token says whether k starts the digit.
  x = model.apply({'params': params}, tokens, steps, method=model.embed)
  assert x.shape == (1, 7, 3, 9, 32)
  raw = lambda t, k, slot: (
      params['token_embed']['embedding'][int(tokens[0, t, slot])]
      + params['role_embed']['embedding'][model_lib.place_layout(9, 'lsb')[0][slot]]
      + params['place_embed']['embedding'][model_lib.place_layout(9, 'lsb')[1][slot]]
      + params['step_embed']['embedding'][t]
      + params['substep_embed']['embedding'][int(k > 0)]
      + pairs[0, t, k, slot] * params['pair_embed']['embedding'][0])
  norm = lambda v: nn.LayerNorm().apply({'params': params['embed_norm']}, v)
  for t, k, slot in ((1, 1, 1), (1, 1, 4), (1, 0, 1), (0, 0, 0), (3, 2, 2)):
    np.testing.assert_allclose(x[0, t, k, slot], norm(raw(t, k, slot)), atol=1e-5)


def test_product_steps_take_k_ttm_steps_per_answer_step(products):
  model, framing, params = products
  model = model.clone(skip_unpaired=False)  # Every TTM step runs; the answer is the last's.
  inputs = framing.encode(np.array([12, 7, 99, 5]), np.array([34, 8, 99, 1]), 2)['inputs']
  # The teacher-forced pass is the scan over S * K TTM steps, read at every K-th.
  def by_hand(module, inputs):
    x = module.embed(inputs, jnp.arange(inputs.shape[1])[None])  # [B, S, K, n, d].
    mask = jnp.repeat(module.input_mask(inputs)[:, :, None], 2, axis=2)  # [B, S, K, n].
    flat = lambda y: y.reshape((y.shape[0], -1) + y.shape[3:])
    outputs = module.encoder.scan_steps(module.initial_memory(4), flat(x), False,
                                        flat(mask))[1]
    assert outputs.shape[1] == 5 * 2
    return module.logits(outputs[:, 1::2])
  masked = _eos_masked(model.apply({'params': params}, inputs, method=by_hand))
  np.testing.assert_allclose(model.apply({'params': params}, inputs), masked, atol=1e-5)
  # Streaming, one call per answer step (K TTM steps inside), gives the same logits.
  np.testing.assert_allclose(_streamed(model, params, inputs), masked, atol=1e-5)


def test_skipping_unpaired_steps_makes_the_answer_independent_of_the_operands_width(products):
  model, framing, params = products  # configs/mult.py:products skips TTM steps without a pair.
  assert model.skip_unpaired
  a, b = np.array([123, 7, 456, 30]), np.array([45, 8, 12, 105])
  narrow = framing.encode(a, b, 3)['inputs']
  short = model.apply({'params': params}, narrow)
  wide = framing.encode(a, b, 5)['inputs']  # K = 5 TTM steps per answer step instead of 3.
  np.testing.assert_allclose(model.apply({'params': params}, wide)[:, :7], short, atol=1e-5)
  # Without skipping, the extra TTM steps (no pair: they only read) change the answer.
  running = model.clone(skip_unpaired=False)
  differ = jnp.abs(running.apply({'params': params}, wide)[:, :7]
                   - running.apply({'params': params}, narrow))
  assert float(differ.max()) > 1e-3
  # Streaming, one call per answer step, reads the same last active TTM step.
  np.testing.assert_allclose(_streamed(model, params, narrow), short, atol=1e-5)
