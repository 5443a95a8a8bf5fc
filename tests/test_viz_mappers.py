"""Tests for record -> voxel mapping and scene layout (no OpenGL needed)."""

import numpy as np
import pytest

from tests import synthetic
from ttm_jax import dumps
from ttm_jax.viz import colormap
from ttm_jax.viz import mappers
from ttm_jax.viz import scene as scene_lib


@pytest.fixture(name='step0', scope='module')
def fixture_step0():
  records, info = synthetic.sequence('123×45')
  return dumps.DumpSequence(None, info, records).at_step(0)


def test_registry_picks_mapper_by_name_type_and_shape(step0):
  registry = mappers.default_registry()
  expected = {'memory_in': mappers.MatrixMapper, 'read_weights': mappers.MatrixMapper,
              'attention/layer0': mappers.SlabStackMapper, 'inputs': mappers.TokenMapper,
              'logits': mappers.VectorMapper, 'prediction': mappers.TokenMapper}
  for name, cls in expected.items():
    assert type(registry.mapper_for(step0[name])) is cls, name  # pylint: disable=unidiomatic-typecheck
  loss = dumps.make_record('loss', np.float32(0.3), 'scalar', run='', epoch=0, batch=0,
                           step=0, example=0, module='head')
  assert isinstance(registry.mapper_for(loss), mappers.ScalarMapper)
  five_d = dumps.make_record('x', np.zeros((2, 3, 4, 5, 6)), run='', epoch=0, batch=0,
                             step=0, example=0, module='')
  assert registry.mapper_for(five_d).get_voxel_layout().count == 2 * 3 * 4 * 5 * 6


def test_matrix_mapper_layout_and_values():
  data = np.arange(12, dtype=np.float32).reshape(3, 4)
  mapper = mappers.MatrixMapper(data.shape, axis_names=('slot', 'dim'))
  layout = mapper.get_voxel_layout()
  assert layout.count == 12 and layout.extent[:2] == (4.0, 3.0)
  np.testing.assert_allclose(layout.positions[6], [2.5, -1.5, -1.0])  # Row 1, column 2.
  np.testing.assert_array_equal(layout.cells[6], [1, 2])
  mapped = mapper.map_to_voxels({'data': data})
  np.testing.assert_allclose(mapped.raw, data.ravel())
  low, high = np.percentile(data, mappers.ROBUST_PERCENTILES)
  np.testing.assert_allclose(mapped.values, np.clip((data.ravel() - low) / (high - low), 0, 1),
                             rtol=1e-6)
  assert mapper.describe(6) == 'slot 1, dim 2'
  with pytest.raises(ValueError, match=r'shape \(3, 4\) got data of shape \(4, 3\)'):
    mapper.map_to_voxels(data.T)


def test_an_outlier_does_not_flatten_the_colours():
  data = np.random.default_rng(0).normal(size=(96, 128)).astype(np.float32)
  data[10, 40] = 300.0  # An edited cell.
  values = mappers.MatrixMapper(data.shape).map_to_voxels(data).values
  assert values[10 * 128 + 40] == 1.0
  assert 0.3 < np.median(values) < 0.7 and values.std() > 0.15
  logits = np.arange(13, dtype=np.float32)
  np.testing.assert_allclose(mappers.VectorMapper((13,)).map_to_voxels(logits).values,
                             logits / 12)


@pytest.mark.parametrize('detail, block, columns', [(0, 1, 128), (1, 2, 64), (2, 4, 32),
                                                    (3, 8, 16), (5, 8, 16)])
def test_detail_pools_the_embedding_axis(detail, block, columns):
  data = np.random.default_rng(0).normal(size=(96, 128)).astype(np.float32)
  mapper = mappers.MatrixMapper(data.shape, detail)
  assert mapper.block == block
  assert mapper.get_voxel_layout().count == 96 * columns
  raw = mapper.map_to_voxels(data).raw.reshape(96, columns)
  np.testing.assert_allclose(raw, data.reshape(96, columns, block).mean(-1), rtol=1e-5)


def test_pooling_keeps_partial_blocks_and_leaves_small_matrices():
  data = np.arange(2 * 123, dtype=np.float32).reshape(2, 123)
  pooled = mappers.pool_last_axis(data, 2)
  assert pooled.shape == (2, 62) and pooled[0, -1] == data[0, -1]
  assert mappers.MatrixMapper((16, 16), detail=3).block == 1
  mapper = mappers.MatrixMapper((2, 123), detail=1, axis_names=('slot', 'token'))
  assert mapper.describe(0) == 'slot 0, token 0-1 (mean of 2)'
  assert mapper.describe(61) == 'slot 0, token 122'


def test_attention_is_stacked_slabs(step0):
  mapper = mappers.default_registry().mapper_for(step0['attention/layer0'])
  layout = mapper.get_voxel_layout()
  assert layout.count == 4 * 16 * 16
  heads = layout.cells[:, 0]
  z_by_head = [np.unique(layout.positions[heads == h, 2]) for h in range(4)]
  assert all(len(z) == 1 for z in z_by_head)
  assert z_by_head[0][0] > z_by_head[1][0] > z_by_head[3][0]  # Head 0 in front.
  assert mapper.describe(16 * 16 + 3) == 'head 1, query 0, key 3'
  single = mappers.SlabStackMapper((1, 2, 3)).get_voxel_layout()
  np.testing.assert_array_equal(single.cells[4], [0, 1, 1])
  vector = mappers.VectorMapper((5,)).get_voxel_layout()
  np.testing.assert_array_equal(vector.cells[:, 0], np.arange(5))


def test_colormap_is_viridis_like_and_never_black():
  table = colormap.viridis()
  assert table.shape == (256, 3)
  np.testing.assert_allclose(table[0], [0.267, 0.005, 0.329], atol=1e-3)
  np.testing.assert_allclose(table[-1], [0.993, 0.906, 0.144], atol=1e-3)
  assert table.sum(1).min() > 0.5
  assert np.all(np.diff(table.sum(1)[::32]) > 0)  # Brightness grows with the value.


def test_scene_layout_is_disjoint_and_replay_sits_beside(step0):
  records = dict(step0)
  records['replay/memory_out'] = dict(step0['memory_out'], name='replay/memory_out')
  scene = scene_lib.Scene(records)
  assert scene.count == sum(i.count for i in scene.items)
  rects = {}
  for item in scene.items:
    width, height, _ = item.mapper.get_voxel_layout().extent
    rects[item.name] = (item.offset[0], item.offset[1] - height, item.offset[0] + width,
                        item.offset[1])
  boxes = list(rects.values())
  for i, a in enumerate(boxes):
    for b in boxes[i + 1:]:
      assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
  original, replayed = scene.item('memory_out'), scene.item('replay/memory_out')
  assert replayed.offset[1] == original.offset[1]
  right_edge = max(r[2] for name, r in rects.items() if name != 'replay/memory_out')
  assert replayed.offset[0] > right_edge
  assert scene.item('inputs').offset[1] > scene.item('memory_out').offset[1]  # First row.


def test_scene_values_and_voxel_lookup(step0):
  scene = scene_lib.Scene(step0, detail=1)
  values = scene.values(step0)
  assert values.values.shape == values.raw.shape == (scene.count,)
  memory = scene.item('memory_out')
  voxel = scene.index_of('memory_out', 5)
  assert scene.locate(voxel) == (memory, 5)
  expected = step0['memory_out']['data'][0, 10:12].mean()
  np.testing.assert_allclose(values.raw[voxel], expected, rtol=1e-5)
  assert scene.index_of('memory_out', memory.count) == -1
  with pytest.raises(ValueError, match='do not match the scene layout'):
    scene.values({k: v for k, v in step0.items() if k != 'logits'})
