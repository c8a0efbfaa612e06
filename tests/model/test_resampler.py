"""The Perceiver resampler against a straightforward re-derivation of its math."""

import pytest
import torch

from xgenmm.model.config import ResamplerConfig
from xgenmm.model.resampler import PerceiverResampler


def reference_resampler(m: PerceiverResampler, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One crop at a time, einsum attention, -inf added to masked keys, row max subtracted."""
    outs = []
    for i in range(x.shape[0]):
        lat = m.latents
        media = x[i]
        keep = torch.cat((mask[i], torch.ones(lat.shape[0])))
        for attn, ff in m.layers:
            xn, ln = attn.norm_media(media), attn.norm_latents(lat)
            q = ln @ attn.to_q.weight.T
            kv = torch.cat((xn, ln)) @ attn.to_kv.weight.T
            k, v = kv[:, : kv.shape[1] // 2], kv[:, kv.shape[1] // 2:]
            h, d = attn.heads, attn.dim_head
            q, k, v = (t.view(t.shape[0], h, d).transpose(0, 1) for t in (q, k, v))
            sim = torch.einsum("hid,hjd->hij", q * d**-0.5, k)
            sim = sim + torch.where(keep.bool(), 0.0, float("-inf"))
            sim = sim - sim.amax(-1, keepdim=True)
            out = torch.einsum("hij,hjd->hid", sim.softmax(-1), v).transpose(0, 1).reshape(lat.shape[0], h * d)
            lat = out @ attn.to_out.weight.T + lat
            norm, fc1, act, fc2 = ff
            lat = fc2(act(fc1(norm(lat)))) + lat
        outs.append(m.projection(m.norm(lat)))
    return torch.stack(outs)


def make(seed=0):
    torch.manual_seed(seed)
    return PerceiverResampler(ResamplerConfig(dim=16, out_dim=24, num_latents=5, depth=2, heads=3, dim_head=8)).eval()


def test_matches_reference_math_with_padding_masks():
    m = make()
    x = torch.randn(3, 9, 16)
    mask = torch.ones(3, 9)
    mask[1, :4] = 0
    mask[2, 6:] = 0
    with torch.no_grad():
        assert torch.allclose(m(x, mask), reference_resampler(m, x, mask), atol=1e-5, rtol=1e-5)


def test_masked_tokens_do_not_change_the_output():
    m = make(1)
    x = torch.randn(1, 9, 16)
    mask = torch.ones(1, 9)
    mask[0, :3] = 0
    y = x.clone()
    y[0, :3] = 100 * torch.randn(3, 16)
    with torch.no_grad():
        assert torch.allclose(m(x, mask), m(y, mask), atol=1e-6)


def test_output_shape_is_latents_by_lm_width():
    assert make()(torch.randn(4, 9, 16)).shape == (4, 5, 24)


def test_release_parameter_names():
    keys = set(make().state_dict())
    for k in ("latents", "layers.0.0.norm_media.weight", "layers.0.0.norm_latents.bias", "layers.0.0.to_q.weight",
              "layers.0.0.to_kv.weight", "layers.0.0.to_out.weight", "layers.1.1.0.weight", "layers.1.1.1.weight",
              "layers.1.1.3.weight", "norm.weight", "projection.weight", "projection.bias"):
        assert k in keys


def make_positional(seed=0, positions=9):
    torch.manual_seed(seed)
    cfg = ResamplerConfig(dim=16, out_dim=24, num_latents=5, depth=2, heads=3, dim_head=8, media_positions=positions)
    return PerceiverResampler(cfg).eval()


def test_media_positions_make_the_output_depend_on_token_order():
    x = torch.randn(2, 9, 16)
    perm = torch.randperm(9)
    plain = make()
    with torch.no_grad():  # the released resampler reads its tokens as a set
        assert torch.allclose(plain(x), plain(x[:, perm]), atol=1e-5)
    pos = make_positional()
    with torch.no_grad():
        assert not torch.allclose(pos(x), pos(x[:, perm]), atol=1e-3)
        # ... and is the released math on the tokens plus their position embeddings
        ref = reference_resampler(pos, x + pos.media_pos, torch.ones(2, 9))
        assert torch.allclose(pos(x), ref, atol=1e-5, rtol=1e-5)


def test_media_positions_are_off_by_default_and_checked_against_the_group_size():
    assert make().media_pos is None and "media_pos" not in make().state_dict()
    m = make_positional(positions=9)
    assert m.state_dict()["media_pos"].shape == (9, 16)
    with pytest.raises(ValueError, match="8 tokens but resampler.media_positions is 9"):
        m(torch.randn(1, 8, 16))


def test_group_positions_add_one_embedding_per_group_slot():
    torch.manual_seed(0)
    cfg = ResamplerConfig(dim=16, out_dim=24, num_latents=5, depth=2, heads=3, dim_head=8, group_positions=4)
    m = PerceiverResampler(cfg).eval()
    x = torch.randn(3, 9, 16)
    slots = torch.tensor([0, 1, 3])
    with torch.no_grad():
        out = m(x, None, slots)
        base = reference_resampler(m, x, torch.ones(3, 9))
    assert torch.allclose(out, base + m.group_pos[slots][:, None, :], atol=1e-5)
    assert m.state_dict()["group_pos"].shape == (4, 24)
    with pytest.raises(ValueError, match="one slot per token group"):
        m(x)
    with pytest.raises(ValueError, match="has 5 token groups but resampler.group_positions is 4"):
        m(x, None, torch.tensor([0, 1, 4]))
    assert make().group_pos is None and "group_pos" not in make().state_dict()


def test_group_positions_number_each_images_groups_from_its_base_crop(tiny_config):
    from xgenmm.model import XGenMM, XGenMMConfig

    d = tiny_config.to_dict()
    d["resampler"]["group_positions"] = 5
    torch.manual_seed(0)
    model = XGenMM(XGenMMConfig.from_dict(d)).eval()
    pixels = [torch.randn(3, 3, 64, 64), torch.randn(1, 3, 64, 64)]  # a 2x1 anyres image, then a single crop
    with torch.no_grad():
        tokens, counts = model.encode_images(pixels, [(128, 64), (64, 64)])
        model.vision_tokenizer.group_pos.zero_()
        plain, _ = model.encode_images(pixels, [(128, 64), (64, 64)])
    t = model.tokens_per_crop
    assert counts == [3 * t, t]
    added = (tokens - plain).view(4, t, -1)
    assert torch.allclose(added[0], added[3], atol=1e-6)  # both base crops: slot 0
    assert not torch.allclose(added[0], added[1]) and not torch.allclose(added[1], added[2])
    assert torch.allclose(added[:, 0], added[:, -1], atol=1e-6)  # one embedding for all of a group's tokens


def test_image_places_number_images_within_each_sample_and_packed_segment():
    from xgenmm.model.fusion import image_places

    t = 9  # the <image> id
    ids = torch.tensor([[1, t, 2, t, 3, t, 0],    # one sample, three images
                        [t, 2, 2, t, t, 4, t]])   # packed: segments 1 (two images), 2 (one), 3 (one)
    assert image_places(ids, t).tolist() == [0, 1, 2, 0, 1, 2, 3]
    seg = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 2, 2, 3]])
    assert image_places(ids, t, seg).tolist() == [0, 1, 2, 0, 1, 0, 0]
    assert image_places(torch.tensor([[1, 2]]), t).tolist() == []


def test_image_positions_mark_later_images_and_leave_the_first_unchanged(tiny_config, tiny_processor):
    from xgenmm.model import XGenMM, XGenMMConfig

    d = tiny_config.to_dict()
    d["resampler"]["image_positions"] = 2
    torch.manual_seed(0)
    model = XGenMM(XGenMMConfig.from_dict(d)).eval()
    assert float(model.vision_tokenizer.image_pos.detach().abs().max()) == 0.0  # zero at init: the released model's output
    with torch.no_grad():
        model.vision_tokenizer.image_pos.copy_(torch.randn(2, d["text"]["hidden_size"]))
    torch.manual_seed(1)
    pixels = [torch.randn(1, 3, 64, 64) for _ in range(3)]
    sizes = [(64, 64)] * 3
    tag = model.config.tokens.image_token_id
    ids = torch.tensor([[5, tag, 6, tag, 7, tag, 8]])
    with torch.no_grad():
        fused = model.fuse_inputs(ids, None, pixels, sizes)
        tokens, counts = model.encode_images(pixels, sizes)
    got = fused.inputs_embeds[0][fused.image_mask[0]].view(3, counts[0], -1)
    plain = tokens.view(3, counts[0], -1)
    pos = model.vision_tokenizer.image_pos
    assert torch.allclose(got[0], plain[0], atol=1e-6)  # the first image: none
    assert torch.allclose(got[1], plain[1] + pos[0], atol=1e-5)
    assert torch.allclose(got[2], plain[2] + pos[1], atol=1e-5)
    # Two single-image samples in one batch: each is its sample's first image.
    two = torch.tensor([[5, tag, 6], [7, tag, 8]])
    with torch.no_grad():
        fused = model.fuse_inputs(two, None, pixels[:2], sizes[:2])
    assert torch.allclose(fused.inputs_embeds[fused.image_mask].view(2, counts[0], -1), plain[:2], atol=1e-6)
    too_many = torch.tensor([[tag, tag, 5, tag, tag]])
    with pytest.raises(ValueError, match="sample 0: image 4 of the sample, but resampler.image_positions \\(2\\) covers images 2 to 3"):
        model.fuse_inputs(too_many, None, pixels + pixels[:1], sizes + sizes[:1])


class Hooked(torch.nn.Module):
    """A wrapped `to_kv` (as an adapter library would wrap it): called as a module."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.base = linear
        self.calls = 0

    @property
    def weight(self):
        return self.base.weight

    def forward(self, z):
        self.calls += 1
        return self.base(z)


def test_keys_and_values_from_the_split_weight_equal_one_to_kv_call_in_value_and_gradient():
    m, x, mask = make(2), torch.randn(3, 9, 16), torch.ones(3, 9)
    mask[0, 5:] = 0
    out = m(x, mask)
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    for attn, _ in m.layers:
        attn.to_kv = Hooked(attn.to_kv)
    wrapped = m(x, mask)
    wrapped.square().sum().backward()
    assert all(attn.to_kv.calls > 0 for attn, _ in m.layers)  # the wrapper was called, not bypassed
    assert torch.allclose(out, wrapped, atol=1e-6)
    for n, p in m.named_parameters():
        assert torch.allclose(grads[n.replace(".base.", ".")], p.grad, atol=1e-5), n
