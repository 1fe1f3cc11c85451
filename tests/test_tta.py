"""Test-time averaging of the SegNet's map over the symmetries of the square (diffad_core.tta)."""

import pytest
import torch
from torch import nn

from diffad_core.tta import SYMMETRIES, TTA_CHOICES, FlipAveragedSegNet


def test_each_symmetry_is_undone_by_its_inverse_and_they_are_all_different():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    images = [s.apply(x) for s in SYMMETRIES]
    for s, y in zip(SYMMETRIES, images):
        assert torch.equal(s.invert(y), x), s.name
    assert len({tuple(y.flatten().tolist()) for y in images}) == 8


def test_one_flip_is_the_plain_segnet_and_more_average_the_mapped_back_maps():
    torch.manual_seed(0)
    segnet = nn.Sequential(nn.Conv2d(6, 1, 3, padding=1), nn.Sigmoid())
    pair = torch.rand(2, 6, 8, 8)
    assert torch.equal(FlipAveragedSegNet(segnet, 1)(pair), segnet(pair))
    two = FlipAveragedSegNet(segnet, 2)(pair)
    assert torch.allclose(two, (segnet(pair) + segnet(pair.flip(-1)).flip(-1)) / 2, atol=1e-6)
    assert not torch.allclose(two, segnet(pair), atol=1e-4)  # a 3 x 3 kernel is not mirror-symmetric
    eight = FlipAveragedSegNet(segnet, 8)
    assert len(eight.maps(pair)) == 8 and eight(pair).shape == (2, 1, 8, 8)


def test_a_segnet_that_commutes_with_every_symmetry_is_unchanged():
    segnet = nn.Conv2d(6, 1, 1)  # a 1 x 1 convolution sees no orientation
    pair = torch.rand(1, 6, 8, 8)
    for n in TTA_CHOICES:
        assert torch.allclose(FlipAveragedSegNet(segnet, n)(pair), segnet(pair), atol=1e-6)


def test_bad_counts_and_quarter_turns_of_rectangles_are_refused():
    with pytest.raises(ValueError, match="one of"):
        FlipAveragedSegNet(nn.Identity(), 3)
    with pytest.raises(ValueError, match="square"):
        FlipAveragedSegNet(nn.Conv2d(6, 1, 1), 8)(torch.rand(1, 6, 8, 6))
    assert FlipAveragedSegNet(nn.Conv2d(6, 1, 1), 4)(torch.rand(1, 6, 8, 6)).shape == (1, 1, 8, 6)
