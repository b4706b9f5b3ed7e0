"""Every head that explains itself answers the same ``attend`` with the same :class:`Attention`."""
from __future__ import annotations

import pytest
import torch

from attnbook.methods.base import Attention, AttentionModel, check_features
from attnbook.methods.bcnn import BCNNHead
from attnbook.methods.bla import BLA_VARIANTS, build_head
from attnbook.methods.brnpa import BRNPAHead
from attnbook.methods.eat import EATHead
from attnbook.methods.region_grouping import RegionGroupingHead
from attnbook.methods.sharpen_focus import SharpenFocusHead
from attnbook.models.heads import GAPHead

C, K = 6, 3


def _heads() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    base = GAPHead(C, K)
    heads = {name: build_head(name, C, K, **({"base_head": base} if name == "bla_ph" else {}))
             for name in BLA_VARIANTS}
    heads["l2x_f"] = build_head("l2x_f", C, K, k=3)
    heads["brnpa"] = BRNPAHead(C, K, n_maps=3)
    heads["bcnn"] = BCNNHead(C, K, n_maps=2)
    heads["eat"] = EATHead(C, K, num_attributes=5, top_k=2)
    heads["region_grouping"] = RegionGroupingHead(C, K, num_parts=3)
    heads["sharpen_focus"] = SharpenFocusHead(C, K)
    return heads


@pytest.mark.parametrize("name", sorted(_heads()))
def test_every_head_attends_alike(name: str) -> None:
    head = _heads()[name].eval()
    features = torch.rand(2, C, 4, 4)  # non-negative, as after a ReLU
    out = head.attend(features)
    assert isinstance(head, AttentionModel) and isinstance(out, Attention)
    assert out.logits.shape == (2, K)
    assert out.maps.ndim == 4 and out.maps.shape[0] == 2 and out.maps.shape[2:] == (4, 4)
    assert (out.maps >= 0).all(), "the map convention: non-negative"
    assert len(out.map_names) == out.maps.shape[1]
    torch.testing.assert_close(out.logits, head(features))  # attend's logits are forward's


def test_map_by_name_and_errors() -> None:
    out = Attention(torch.zeros(2, 3), torch.rand(2, 2, 4, 4), ("soft", "hard"))
    torch.testing.assert_close(out.map("hard"), out.maps[:, 1])
    with pytest.raises(KeyError, match="soft"):
        out.map("cam")
    assert Attention(torch.zeros(2, 3), torch.rand(2, 3, 1, 1)).map_names == ("map 1", "map 2", "map 3")
    with pytest.raises(ValueError, match="same B"):
        Attention(torch.zeros(3, 3), torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="2 names for 1 maps"):
        Attention(torch.zeros(2, 3), torch.rand(2, 1, 4, 4), ("a", "b"))


def test_check_features_names_the_problem() -> None:
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        check_features(torch.rand(2, 3))
    with pytest.raises(ValueError, match="have 3 channels, the head expects 4"):
        check_features(torch.rand(1, 3, 2, 2), 4)


def test_gap_attention_is_uniform_and_bla_has_soft_and_hard_maps() -> None:
    heads = _heads()
    features = torch.rand(2, C, 4, 4)
    gap = heads["bl"].attend(features)
    torch.testing.assert_close(gap.maps, torch.full((2, 1, 4, 4), 1 / 16))
    bla = heads["bla"].eval().attend(features)
    assert bla.names == ("soft", "hard")
    torch.testing.assert_close(bla.map("soft").sum(dim=(1, 2)), torch.ones(2))
    assert set(bla.map("hard").unique().tolist()) <= {0.0, 1.0}
