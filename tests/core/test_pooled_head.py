"""The served pooled study heads compute exactly what the CV-fitted heads computed."""
import numpy as np
import torch

from diseaseid.models import create_model
from diseaseid.train.subject_heads import LinearHead, OrdinalHead, slab_means, slice_linear


def _bags(rng, n=40, slices=7, f=6):
    y = rng.integers(0, 3, n)
    return [{"final": rng.normal(size=(slices, f)) + y_[None, None] * 0.8} for y_ in y], y


def _head(kind: str, fit, slabs: int = 1):
    """A pooled head carrying ``fit``'s parameters."""
    head = create_model("pooled_head", num_classes=4, in_features=6, slabs=slabs, kind=kind)
    with torch.no_grad():
        if kind == "ordinal":
            head.weight.copy_(torch.from_numpy(fit.weight))
            head.thresholds.copy_(torch.from_numpy(fit.thresholds))
        else:
            head.linear.weight.copy_(torch.from_numpy(fit.weight))
            head.linear.bias.copy_(torch.from_numpy(fit.bias))
    return head


def test_slab_pooling_matches_numpy_and_linear_head():
    rng = np.random.default_rng(0)
    bags, y = _bags(rng)
    x = np.stack([slab_means(b["final"], 3) for b in bags])
    fit = LinearHead(l2=1.0).fit(x, y)
    head = _head("linear", fit, slabs=3)
    feats = torch.from_numpy(np.stack([b["final"] for b in bags])).float()
    assert torch.allclose(head.pool(feats), torch.from_numpy(x).float(), atol=1e-6)
    probs = torch.softmax(head(feats), 1).detach().numpy()
    assert np.allclose(probs, fit.predict_proba(x), atol=1e-5)
    # Attention: uniform over the slices sent; a mask leaves the padding out.
    mask = torch.ones(feats.shape[:2], dtype=torch.bool)
    mask[0, 5:] = False
    _, att = head(feats, None, mask, return_attention=True)
    assert torch.allclose(att[0, :5], torch.full((5,), 0.2)) and att[0, 5:].sum() == 0
    # Fewer slices than slabs still answers (each slab takes its nearest slice).
    assert torch.isfinite(head(feats[:1, :2])).all()


def test_ordinal_pooled_head_matches_the_fitted_model():
    rng = np.random.default_rng(1)
    bags, y = _bags(rng)
    x = np.stack([slab_means(b["final"], 1) for b in bags])
    fit = OrdinalHead(l2=1.0).fit(x, y)
    head = _head("ordinal", fit)
    feats = torch.from_numpy(np.stack([b["final"] for b in bags])).double()
    probs = torch.softmax(head.double()(feats), 1).detach().numpy()
    assert np.allclose(probs, fit.predict_proba(x) / fit.predict_proba(x).sum(1, keepdims=True), atol=1e-6)


def test_slice_head_is_the_geometric_mean_of_the_slices():
    rng = np.random.default_rng(2)
    bags, y = _bags(rng)
    res = slice_linear(bags[:30], y[:30], bags[30:], l2=1.0, balanced=False)
    fit = LinearHead(l2=1.0).fit(np.concatenate([b["final"] for b in bags[:30]]), np.repeat(y[:30], 7))
    head = _head("slices", fit)
    feats = torch.from_numpy(np.stack([b["final"] for b in bags[30:]])).double()
    probs = torch.softmax(head.double()(feats), 1).detach().numpy()
    assert np.allclose(probs, res.subject_probs, atol=1e-6)
    # By hand for one subject: exp(mean log p) normalised.
    p = fit.predict_proba(bags[30]["final"])
    g = np.exp(np.log(p).mean(0))
    assert np.allclose(probs[0], g / g.sum(), atol=1e-6)
    # Its per-slice weights: a softmax over slices of log p(answered class); the surest slice weighs most.
    _, att = head.double()(feats[:1], None, None, return_attention=True)
    label = probs[0].argmax()
    expected = p[:, label] / p[:, label].sum()
    assert np.allclose(att[0].detach().numpy(), expected, atol=1e-6)
    assert int(att[0].argmax()) == int(p[:, label].argmax())
