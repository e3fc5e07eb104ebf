import math

import torch

from data_prep.ibug68 import FLIP_PERMUTATION, PARTS
from orchestrator.augment import AugmentSettings, move_landmarks, random_transforms, warp_images


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
    settings = AugmentSettings(hflip=False, rotation_deg=20, shift=0.1, shear=0.1)
    fwd, flipped = random_transforms(1, settings, gen, "cpu")
    warped, moved = warp_images(img, fwd), move_landmarks(pts, fwd, flipped)
    rr, cc = divmod(int(warped[0, 0].argmax()), size)
    px, py = moved[0, 30, 0] * size - 0.5, moved[0, 30, 1] * size - 0.5
    assert math.hypot(px - cc, py - rr) < 1.5


def test_identity_settings_change_nothing():
    gen = torch.Generator().manual_seed(0)
    settings = AugmentSettings(hflip=False, rotation_deg=0, shift=0, shear=0)
    fwd, flipped = random_transforms(4, settings, gen, "cpu")
    img = torch.rand(4, 1, 16, 16)
    pts = torch.rand(4, 68, 2)
    warped, moved = warp_images(img, fwd), move_landmarks(pts, fwd, flipped)
    assert torch.allclose(warped, img, atol=1e-5) and torch.allclose(moved, pts, atol=1e-6)


def test_parts_cover_the_68_points_once():
    covered = sorted(i for a, b in PARTS.values() for i in range(a, b))
    assert covered == list(range(68))


def test_closed_form_inverse_matches_linalg():
    from orchestrator.augment import _inverse_2x2
    gen = torch.Generator().manual_seed(3)
    forward, _ = random_transforms(64, AugmentSettings(), gen, "cpu")
    linear = forward[:, :, :2]
    assert torch.allclose(_inverse_2x2(linear), torch.linalg.inv(linear), atol=1e-6)


def test_affine_grid_matches_torch():
    import torch.nn.functional as F

    from orchestrator.augment import affine_grid
    gen = torch.Generator().manual_seed(3)
    theta = torch.randn(5, 2, 3, generator=gen)
    for h, w in ((7, 9), (1, 4), (160, 160)):
        want = F.affine_grid(theta, [5, 1, h, w], align_corners=False)
        got = affine_grid(theta, h, w)
        assert got.shape == want.shape == (5, h, w, 2)
        torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-6)
