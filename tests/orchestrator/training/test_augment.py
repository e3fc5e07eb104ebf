import math

import numpy as np

import torch

from partfer.data_prep.ibug68 import FLIP_PERMUTATION, PARTS
from partfer.orchestrator.training.jobs import AugmentSettings
from partfer.orchestrator.training.augment import move_landmarks, random_transforms, warp_images


def test_flip_permutation_is_an_involution_that_swaps_sides():
    perm = FLIP_PERMUTATION
    assert sorted(perm) == list(range(68))
    assert all(perm[perm[i]] == i for i in range(68))
    assert perm[0] == 16 and perm[36] == 45 and perm[48] == 54 and perm[17] == 26
    assert perm[30] == 30 and perm[8] == 8          # nose tip and chin stay


def _symmetric_face():
    """Mirror-symmetric points: each left/right pair at x and 1 - x, the lower index on the image left."""
    pts = torch.zeros(68, 2)
    perm = FLIP_PERMUTATION
    for i in range(68):
        j = perm[i]
        offset = 0.0 if i == j else 0.05 + 0.004 * min(i, j)
        pts[i, 0] = 0.5 - offset if i < j else 0.5 + offset
        pts[i, 1] = 0.2 + 0.01 * min(i, j)
    return pts


def test_flipping_a_symmetric_face_gives_back_the_same_targets():
    pts = _symmetric_face()[None]
    fwd = torch.tensor([[[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    moved = move_landmarks(pts, fwd, torch.tensor([True]))
    assert torch.allclose(moved, pts, atol=1e-6)
    # without the permutation the mirrored targets would put point 36 where 45 belongs
    mirrored = pts.clone()
    mirrored[..., 0] = 1 - mirrored[..., 0]
    assert not torch.allclose(mirrored, pts, atol=1e-3)


def test_image_and_landmarks_move_together():
    # a single bright pixel and a landmark on it must stay together under a random transform
    size = 64
    img = torch.zeros(1, 1, size, size)
    r, c = 20, 40
    img[0, 0, r - 1:r + 2, c - 1:c + 2] = 1.0
    pts = torch.full((1, 68, 2), 0.5)
    pts[0, 30] = torch.tensor([(c + 0.5) / size, (r + 0.5) / size])
    gen = torch.Generator().manual_seed(3)
    settings = AugmentSettings(hflip=False, rotation_deg=20, shift=0.1, shear_deg=6.0)
    fwd, flipped = random_transforms(1, settings, gen, "cpu")
    warped, moved = warp_images(img, fwd), move_landmarks(pts, fwd, flipped)
    rr, cc = divmod(int(warped[0, 0].argmax()), size)
    px, py = moved[0, 30, 0] * size - 0.5, moved[0, 30, 1] * size - 0.5
    assert math.hypot(px - cc, py - rr) < 1.5


def test_identity_settings_change_nothing():
    gen = torch.Generator().manual_seed(0)
    settings = AugmentSettings(hflip=False, rotation_deg=0, shift=0, shear_deg=0)
    fwd, flipped = random_transforms(4, settings, gen, "cpu")
    img = torch.rand(4, 1, 16, 16)
    pts = torch.rand(4, 68, 2)
    warped, moved = warp_images(img, fwd), move_landmarks(pts, fwd, flipped)
    assert torch.allclose(warped, img, atol=1e-5) and torch.allclose(moved, pts, atol=1e-6)


def test_parts_cover_the_68_points_once():
    covered = sorted(i for a, b in PARTS.values() for i in range(a, b))
    assert covered == list(range(68))


def test_closed_form_inverse_matches_linalg():
    from partfer.orchestrator.training.augment import _inverse_2x2
    gen = torch.Generator().manual_seed(3)
    forward, _ = random_transforms(64, AugmentSettings(), gen, "cpu")
    linear = forward[:, :, :2]
    assert torch.allclose(_inverse_2x2(linear), torch.linalg.inv(linear), atol=1e-6)


def test_affine_grid_matches_torch():
    import torch.nn.functional as F

    from partfer.orchestrator.training.augment import affine_grid
    gen = torch.Generator().manual_seed(3)
    theta = torch.randn(5, 2, 3, generator=gen)
    for h, w in ((7, 9), (1, 4), (160, 160)):
        want = F.affine_grid(theta, [5, 1, h, w], align_corners=False)
        got = affine_grid(theta, h, w)
        assert got.shape == want.shape == (5, h, w, 2)
        torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-6)


def _keras_matrix(theta_deg: float, tx: float, ty: float, shear_deg: float, h: int, w: int,
                  centre: tuple[float, float]) -> np.ndarray:
    """Keras's apply_affine_transform matrix (output (row, col) pixel -> input pixel), written
    out from its definition: rotation @ shift @ shear, moved to `centre`."""
    t, s = np.deg2rad(theta_deg), np.deg2rad(shear_deg)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    shear = np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    o_r, o_c = centre
    offset = np.array([[1, 0, o_r], [0, 1, o_c], [0, 0, 1]])
    reset = np.array([[1, 0, -o_r], [0, 1, -o_c], [0, 0, 1]])
    return offset @ rotation @ shift @ shear @ reset


def test_sampling_map_is_keras_affine_then_flip():
    """Ours, in pixel (x, y) coordinates, equals Keras's (row, col) matrix composed with its
    horizontal flip, for angles in degrees and shifts as fractions of the side."""
    from partfer.orchestrator.training.augment import keras_sampling_maps
    size = 40
    for theta, fr, fc, shear, flip in [(12.0, 0.03, -0.05, 0.05, False), (-15.0, -0.05, 0.02, 20.0, True),
                                       (0.0, 0.0, 0.0, 30.0, False), (7.0, 0.01, 0.04, -10.0, True)]:
        ours = keras_sampling_maps(torch.tensor([theta], dtype=torch.float64), torch.tensor([2 * fr], dtype=torch.float64),
                                   torch.tensor([2 * fc], dtype=torch.float64), torch.tensor([shear], dtype=torch.float64),
                                   torch.tensor([flip]))[0].numpy()
        centre = (size - 1) / 2
        keras = _keras_matrix(theta, fr * size, fc * size, shear, size, size, (centre, centre))
        flip_cols = np.array([[1, 0, 0], [0, -1, size - 1], [0, 0, 1]]) if flip else np.eye(3)
        keras_rc = keras @ flip_cols
        # ours in pixels: p_pix = centre + (size / 2) p_norm, with (x, y) = (col, row)
        lin, off = ours[:, :2], ours[:, 2] * size / 2
        swap = np.array([[0, 1], [1, 0]])
        ours_rc_lin = swap @ lin @ swap
        ours_rc_off = swap @ off + centre - ours_rc_lin @ np.array([centre, centre])
        np.testing.assert_allclose(ours_rc_lin, keras_rc[:2, :2], atol=1e-12)
        np.testing.assert_allclose(ours_rc_off, keras_rc[:2, 2], atol=1e-9)
        # the linear part does not depend on the centre: exactly Keras's own (h / 2 + 0.5)
        own = _keras_matrix(theta, fr * size, fc * size, shear, size, size, (size / 2 + 0.5,) * 2) @ flip_cols
        np.testing.assert_allclose(ours_rc_lin, own[:2, :2], atol=1e-12)


def test_warp_equals_scipy_affine_transform_as_keras_applies_it():
    """The image warped by our maps equals Keras's way of applying its matrix (scipy's
    affine_transform, order 1, fill "nearest"), about the true centre, then the column flip."""
    from scipy import ndimage
    from partfer.orchestrator.training.augment import keras_sampling_maps
    size = 48
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.sin(xx / 5.0) + np.cos(yy / 7.0) + 0.02 * xx * yy / size
    theta, fr, fc, shear = 13.0, 0.04, -0.03, 25.0
    centre = (size - 1) / 2
    m = _keras_matrix(theta, fr * size, fc * size, shear, size, size, (centre, centre))
    expected = ndimage.affine_transform(img, m[:2, :2], m[:2, 2], order=1, mode="nearest")[:, ::-1]
    maps = keras_sampling_maps(*(torch.tensor([v], dtype=torch.float64) for v in (theta, 2 * fr, 2 * fc, shear)),
                               torch.tensor([True]))
    from partfer.orchestrator.training.augment import sampling_maps
    ours = warp_images(torch.tensor(img.copy())[None, None], sampling_maps(maps))[0, 0].numpy()
    inner = slice(4, size - 4)
    np.testing.assert_allclose(ours[inner, inner], expected[inner, inner], atol=1e-6)


def test_draws_stay_within_keras_ranges():
    gen = torch.Generator().manual_seed(1)
    settings = AugmentSettings(hflip=True, rotation_deg=15.0, shift=0.05, shear_deg=0.05)
    fwd, flipped = random_transforms(4000, settings, gen, "cpu")
    from partfer.orchestrator.training.augment import sampling_maps
    lin = sampling_maps(fwd)[:, :, :2]
    # a rotation (and flip) has orthonormal columns; a shear of s degrees moves them by ~sin(s):
    # 8.7e-4 at 0.05 degrees, where a shear FACTOR of 0.05 (2.9 degrees) would give 0.05
    gram = lin.double().transpose(1, 2) @ lin.double() - torch.eye(2, dtype=torch.float64)
    assert 5e-4 < float(gram.abs().max()) < 1e-3
    assert 0.4 < float(flipped.float().mean()) < 0.6
