"""Training a TTM to multiply, over the 7-stage curriculum.

Arguments (comma separated, after a colon):
  python main.py --config=configs/mult.py                 # the default setting (below)
  python main.py --config=configs/mult.py:stage=3         # start at curriculum stage 3
  python main.py --config=configs/mult.py:runlocal        # tiny, trains in well under a minute
  python main.py --config=configs/mult.py:paper           # the paper's model and the checklist's
                                                          # training setting
  python main.py --config=configs/mult.py:places          # place-value embeddings with random
                                                          # offsets, operands up to 12 digits
  python main.py --config=configs/mult.py:coupled         # the same, b's places coupled to a's
                                                          # per step (position coupling)
  python main.py --config=configs/mult.py:products        # places, one TTM step per digit
                                                          # product
The default is the setting that learned fastest on a 2-core CPU (docs/experiments/README.md):
a small TTM (d=64, m=16, r=8, 4 layers), no dropout, batch 32, operands in aligned slots, and a
curriculum through every stage range, each mixed range before the pure size it holds (1×1, 1-99,
2×2, 1-999, 3×3, 1-9999, 4×4), that keeps reviewing the stages already passed; the learning
rate restarts at 1e-3 at each stage and halves whenever the stage's training loss stops
improving (ttm_jax/optim.py, ttm_jax/curriculum.py).
Any field can then be overridden: --config.train.batch_size=128.
"""

import ml_collections

def _bool(text: str) -> bool:
  """`true`/`1` or `false`/`0` (any case); anything else is an error."""
  value = {'true': True, '1': True, 'false': False, '0': False}.get(text.lower())
  if value is None:
    raise ValueError(f'expected true, false, 1 or 0, got {text!r}')
  return value


def _int(text: str) -> int:
  if not text.isascii() or not text.isdigit():
    raise ValueError(f'expected a non-negative integer, got {text!r}')
  return int(text)


ARGS = {'stage': _int, 'runlocal': _bool, 'paper': _bool, 'places': _bool, 'coupled': _bool,
        'products': _bool}
DEFAULTS = {'stage': 0, 'runlocal': False, 'paper': False, 'places': False, 'coupled': False,
            'products': False}


def parse_arg(arg):
  """`'stage=3,runlocal'` -> `{'stage': 3, 'runlocal': True, 'paper': False}`; a boolean
  argument alone means true.

  Raises:
    ValueError: `config argument <name>: <why>` for an unknown argument or a bad value.
  """
  parsed = dict(DEFAULTS)
  for item in filter(None, (arg or '').split(',')):
    name, equals, value = item.partition('=')
    if name not in ARGS:
      raise ValueError(f'config argument {name}: unknown; known: {", ".join(ARGS)}')
    if not equals and ARGS[name] is _bool:
      parsed[name] = True
      continue
    try:
      parsed[name] = ARGS[name](value)
    except ValueError as e:
      raise ValueError(f'config argument {name}: {e}') from None
  return parsed


def get_config(arg=None):
  """The config for `arg` (see the module docstring)."""
  arg = parse_arg(arg)
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds parameters, dropout and the data RNG.

  config.task = ml_collections.ConfigDict()
  config.task.max_digits = 5  # Longest operand the model accepts (training uses up to 4).
  config.task.framing = 'problem'  # 'problem' (whole problem every step) or 'stream'.
  config.task.digit_order = 'lsb'  # 'lsb' or 'msb': digit order of operands and answer.
  config.task.layout = 'aligned'  # 'packed' (a×b as written) or 'aligned' (operands PAD-padded).
  # How the model tells a step's tokens apart: 'slots' (an embedding per input slot, so n and
  # the longest operand are fixed) or 'places' (role + place value of each digit, the problem
  # written at its own length: aligned problem framing; ttm_jax/model.py).
  config.task.positions = 'slots'
  # 'places': each training example's place indices are shifted by a random o in [0, this]
  # (its step indices by 2o), so that the places beyond the trained lengths are trained too.
  config.task.place_offset = 0
  # 'places', 'lsb': at step t a b digit b_j takes place t - j, the place of the a digit it
  # pairs with for answer digit t (position coupling), instead of its own place j.
  config.task.coupled = False
  # 'places', 'lsb': each answer step is one TTM step per a digit, the k-th marking the pair
  # a_k, b_(t-k), so the memory can add one digit product per TTM step (ttm_jax/model.py).
  config.task.product_steps = False
  # product_steps: a TTM step without a pair (past an operand's end) keeps the memory as it
  # was, and the answer is read from the answer step's last TTM step that ran.
  config.task.skip_unpaired = False

  config.model = ml_collections.ConfigDict()
  config.model.kind = 'ttm'  # 'ttm', or 'transformer': the causal baseline (stream framing).
  config.model.hidden_size = 64  # d: token width.
  config.model.memory_size = 16  # m: memory tokens.
  config.model.process_size = 8  # r: tokens read and processed per step.
  # Memory read/write: 'TL', 'TL-MHA', 'TL-AddErase' (Scenic's), 'TL-AddErase-NTM', 'pool',
  # 'fifo', or 'none' (memory-less).
  config.model.memory_mode = 'TL'
  config.model.processing_unit = 'transformer'  # 'transformer', 'mixer' or 'mlp'.
  config.model.num_layers = 4  # Layers of the processing unit (2 stall on 3×3).
  config.model.num_heads = 4  # Attention heads of the processing unit.
  config.model.mlp_dim = 256  # MLP width of the processing unit.
  config.model.use_positional_embedding = True  # Learned read/write position embeddings.
  config.model.memory_init = 'learned'  # 'learned' (normal, stddev 0.01) or 'zeros'.
  config.model.simple_unit = False  # TokenTuringMachineSimpleUnit instead of the full unit.
  config.model.step_embedding = True  # Add a learned embedding of the step index.
  config.model.dropout_rate = 0.0  # Dropout everywhere in the model.
  config.model.token_embed_stddev = 0.125  # Initial scale of the token embeddings.
  config.model.scan = True  # nn.scan over steps; False: a Python loop over steps (Scenic's).
  config.model.scan_unroll = 1  # Steps per iteration of the scanned loop (0: all of them).
  config.model.remat = True  # Recompute each step's activations in the backward pass (faster here).
  config.model.compute_dtype = 'float32'  # Or 'bfloat16': the TTM's arithmetic (params stay fp32).

  config.optim = ml_collections.ConfigDict()
  config.optim.peak_lr = 1e-3  # Learning rate after warmup.
  config.optim.warmup_steps = 100  # Linear warmup from 0.
  config.optim.decay_steps = 0  # Cosine decay after warmup over this many steps (0: none)...
  config.optim.end_lr = 3e-5  # ...down to this; also the floor of the plateau cuts.
  config.optim.restart_per_stage = True  # Restart the schedule (and plateau scale) per stage.
  config.optim.plateau_factor = 0.5  # Multiply the rate by this (1.0: never) when a stage...
  config.optim.plateau_patience = 20  # ...has this many evaluations in which its training loss...
  config.optim.plateau_min_improvement = 0.01  # ...did not beat its best by this fraction.
  config.optim.b1 = 0.9  # AdamW beta1.
  config.optim.b2 = 0.99  # AdamW beta2.
  config.optim.eps = 1e-8  # AdamW epsilon.
  config.optim.weight_decay = 1e-4  # On weight matrices only (not biases, norms, embeddings).
  config.optim.clip_norm = 1.0  # Global gradient-norm clipping.
  # Evaluate and save a moving average of the parameters with this decay per step (0: off).
  config.optim.ema_decay = 0.0

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32  # Global batch, split over all devices.
  config.train.shard_params = False  # Shard parameters and optimizer state over the devices.
  config.train.num_steps = 2000000  # At most this many training steps (all stages).
  config.train.max_seconds = 0.0  # Stop after this much wall clock, evaluations included (0: none).
  config.train.steps_per_epoch = 200  # Train steps between evaluations.
  config.train.steps_per_call = 10  # Train steps per jitted call (one scan; divides the above).
  config.train.stages = '1,5,2,6,3,7,4'  # The curriculum stages (1-7) in the order visited.
  config.train.start_stage = arg['stage'] or 1  # Curriculum stage to start from.
  config.train.last_stage = 4  # Training ends when this stage is passed.
  config.train.threshold = 0.9  # Promote when the mean of the last `window`...
  config.train.window = 5  # ...evaluation sequence accuracies reaches `threshold`...
  config.train.final_threshold = 0.995  # ...or, at the last stage, this (training then ends).
  config.train.max_epochs_per_stage = 1000  # Promote anyway after this many (not the last).
  config.train.patience = 200  # Stop after this many evaluations without improvement.
  config.train.augment = True  # Operand swap and in-batch permutation.
  config.train.review = 0.3  # Fraction of each batch drawn from earlier stages.
  config.train.init_from = ''  # A workdir whose best parameters start a new run ('': fresh).

  config.eval = ml_collections.ConfigDict()
  config.eval.num_examples = 256  # Held-out problems per periodic evaluation.
  config.eval.num_per_size = 2000  # Problems per row of --mode=eval (fewer: all there are)...
  config.eval.seed = 1234  # ...drawn with this seed (another seed: another fresh set).
  # Rows of the --mode=eval table: AxB digits, or L-H (both operands in [L, H]).
  config.eval.sizes = '1x1,2x1,2x2,3x2,3x3,4x4,1-9999,5x5'
  # Rows also scored at every evaluation, on one fixed set of held-out problems ('': none).
  config.eval.track = ''
  config.eval.batch_size = 500  # Decoding batch in --mode=eval.
  config.eval.log_examples = 3  # Example predictions logged per evaluation.

  config.trace = ml_collections.ConfigDict()
  config.trace.num_examples = 4  # Eval problems traced into workdir/dumps (0: off).
  config.trace.every_epochs = 10  # Trace at every this many evaluations.

  config.monitor = ml_collections.ConfigDict()
  config.monitor.max_abs_memory = 100.0  # Warn when a memory value exceeds this.

  config.profile = ml_collections.ConfigDict()
  config.profile.first_step = 10  # First train step traced into workdir/profile...
  config.profile.num_steps = 0  # ...and how many (0: no profile).

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.keep = 3  # Latest checkpoints kept (the best is kept separately).
  config.checkpoint.every_epochs = 1  # Save every this many epochs.
  # 'Best' and early stopping use progress = (stages passed) + eval sequence accuracy.

  if arg['paper']:
    config.task.layout = 'packed'
    config.model.update(hidden_size=128, memory_size=96, process_size=16, num_layers=4,
                        num_heads=4, mlp_dim=512, dropout_rate=0.1, token_embed_stddev=0.01,
                        remat=False, scan_unroll=0)
    config.optim.update(peak_lr=2e-3, decay_steps=1000, end_lr=1e-4, restart_per_stage=False,
                        plateau_factor=1.0)  # 2x base 1e-3.
    config.train.update(batch_size=64, num_steps=20000, steps_per_epoch=100,
                        stages='1,2,3,4,5,6,7', last_stage=7, patience=20, review=0.0)
  if arg['places'] or arg['coupled'] or arg['products']:  # Issue 36: answer up to 12 digits.
    config.task.update(positions='places', max_digits=12, place_offset=6,
                       coupled=arg['coupled'], product_steps=arg['products'],
                       skip_unpaired=arg['products'])
    config.eval.sizes += ',6x6,7x7,8x8'
  if arg['runlocal']:
    config.model.update(hidden_size=32, memory_size=8, process_size=4, num_layers=1,
                        num_heads=2, mlp_dim=64)
    config.train.update(batch_size=16, num_steps=60, steps_per_epoch=10, patience=5)
    config.eval.update(num_examples=32, num_per_size=50, batch_size=50)
    config.trace.num_examples = 0
  return config
