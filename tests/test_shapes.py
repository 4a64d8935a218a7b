"""The built-in `shapes` segmentation dataset and the Pet record transform."""
import numpy as np
import pytest

from experiments import data


def _small(seed=0, **kw):
  kw = {"num_train": 6, "num_validation": 3, "num_test": 4, **kw}
  return data.get_dataset("shapes", seed=seed, **kw)


def test_registered_and_described():
  assert "shapes" in data.DATASETS and "oxford_iiit_pet" in data.DATASETS
  ds = _small(size=16)
  assert ds.task == "segmentation" and ds.num_classes == 4
  assert ds.input_shape == (16, 16, 3)
  assert {k: len(v) for k, v in ds.splits.items()} == {
      "train": 6, "validation": 3, "test": 4}
  ex = ds.splits["train"][0]
  assert ex["image"].shape == (16, 16, 3) and ex["image"].dtype == np.float32
  assert ex["label"].shape == (16, 16) and ex["label"].dtype == np.int32


def test_deterministic_per_seed_and_split():
  a, b, c = _small(0), _small(0), _small(1)
  for split in ("train", "validation", "test"):
    np.testing.assert_array_equal(a.splits[split].arrays["image"],
                                  b.splits[split].arrays["image"])
    np.testing.assert_array_equal(a.splits[split].arrays["label"],
                                  b.splits[split].arrays["label"])
  assert not np.array_equal(a.splits["train"].arrays["label"],
                            c.splits["train"].arrays["label"])
  # Each split has its own stream: the test set ignores num_train.
  d = _small(0, num_train=9)
  np.testing.assert_array_equal(a.splits["test"].arrays["label"],
                                d.splits["test"].arrays["label"])
  np.testing.assert_array_equal(a.splits["train"].arrays["label"],
                                d.splits["train"].arrays["label"][:6])


def test_labels_match_the_drawn_shapes():
  images, labels = data.make_shapes_split(3, 0, 40, size=24, noise=0.0)
  assert labels.min() >= 0 and labels.max() <= 3
  assert set(np.unique(labels)) == {0, 1, 2, 3}
  for img, lab in zip(images, labels):
    assert (lab > 0).any() and (lab == 0).any()  # a shape and background
    # Without noise, a shape pixel's colour differs from the background's
    # mean colour by >= min_contrast (0.25) minus the gradient (0.15) in
    # some channel.
    bg = img[lab == 0].mean(0)
    for cls in np.unique(lab[lab > 0]):
      col = img[lab == cls][0]
      assert np.max(np.abs(col - bg)) > 0.09


def test_train_batch_and_eval_padding():
  ds = _small(size=16)
  b = data.train_batch(ds.splits["train"], 1, batch_size=4, seed=0)
  assert b["image"].shape == (4, 16, 16, 3) and b["label"].shape == (4, 16, 16)
  batches = list(data.eval_batches(ds.splits["validation"], batch_size=2))
  assert [float(x["weight"].sum()) for x in batches] == [2.0, 1.0]
  assert not batches[-1]["label"][1].any()


def test_bad_options():
  with pytest.raises(ValueError, match="size"):
    _small(size=4)
  with pytest.raises(ValueError, match="split sizes"):
    _small(num_test=0)


def test_pet_transform_resizes_and_maps_the_trimap():
  # A 4x6 image; trimap 1 = pet, 2 = background, 3 = border.
  image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
  trimap = np.array([[2, 2, 2, 2, 2, 2],
                     [2, 1, 1, 3, 2, 2],
                     [2, 1, 1, 3, 2, 2],
                     [2, 2, 2, 2, 2, 2]], np.uint8)[..., None]
  out = data.PetTransform(2, binary=False)(
      {"image": image, "segmentation_mask": trimap})
  # Nearest neighbour: output (i, j) reads input rows (1, 3), cols (1, 4).
  np.testing.assert_array_equal(out["label"], [[0, 1], [1, 1]])
  np.testing.assert_allclose(out["image"][0, 0], image[1, 1] / 255.0,
                             rtol=1e-6)
  three = data.PetTransform(3, binary=True)(
      {"image": image, "segmentation_mask": trimap})
  # rows (0, 2, 3), cols (1, 3, 5); border (3 -> 2) counts as pet (0).
  np.testing.assert_array_equal(three["label"],
                                [[1, 1, 1], [0, 0, 1], [1, 1, 1]])


def test_pet_under_mock_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=12,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    ds = data.get_dataset("oxford_iiit_pet", data_dir=tmp_path,
                          num_validation=4, size=16)
    assert ds.task == "segmentation" and ds.num_classes == 3
    assert ds.input_shape == (16, 16, 3)
    assert {k: len(v) for k, v in ds.splits.items()} == {
        "train": 8, "validation": 4, "test": 12}
    b = data.train_batch(ds.splits["train"], 0, batch_size=4, seed=0)
    assert b["image"].shape == (4, 16, 16, 3)
    assert b["label"].shape == (4, 16, 16) and b["label"].dtype == np.int32
    assert 0 <= b["label"].min() and b["label"].max() <= 2
    with pytest.raises(ValueError, match="num_validation"):
      data.get_dataset("oxford_iiit_pet", data_dir=tmp_path,
                       num_validation=12)
