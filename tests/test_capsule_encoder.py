"""The capsule encoder's options: hidden units, the code shared by all CCs, the refined-code target."""

from __future__ import annotations

import numpy as np
import torch

from vizkit.models.capsule.model import POSE, CapsuleAE

TINY = dict(ccs=3, acs=2, distortion=2, template_size=4, hidden=8, dist_hidden=6)


def tiny(**kw) -> CapsuleAE:
    torch.manual_seed(0)
    return CapsuleAE([1, 8, 8], **{**TINY, **kw}).eval()


def test_activation_sets_the_first_two_hidden_layers_of_both_nets():
    x = torch.rand(20, 1, 8, 8)
    logistic, relu = tiny(activation="logistic"), tiny()
    for layer in ("h1", "h2"):
        h = logistic.activations(x, layer)
        assert ((h > 0) & (h < 1)).all()
        r = relu.activations(x, layer)
        assert (r >= 0).all() and (r == 0).any()
    pre = relu.encoder.l1(relu.flat(x))
    torch.testing.assert_close(relu.activations(x, "h1"), pre.clamp(min=0))
    assert relu.distortion_net.activation == "relu" and logistic.distortion_net.activation == "logistic"


def test_shared_code_adds_one_part_to_every_cc_but_not_to_the_logits():
    model = tiny(shared_code=True, shared_distortion=True)
    n_own = 3 * (POSE + 2 + 1)
    with torch.no_grad():
        for layer in (model.encoder.out1, model.encoder.out2, model.encoder.out3):
            layer.weight_raw[:n_own] = 0.0
        model.encoder.out3.bias[:n_own] = 0.0
    x4 = torch.rand(4, 1, 8, 8)
    code = model.code(x4)
    assert code.shape == (4, 3, POSE + 2 + 1)
    torch.testing.assert_close(code[:, 0, :-1], code[:, 1, :-1])
    torch.testing.assert_close(code[:, 0, :-1], code[:, 2, :-1])
    assert code[:, 0, :-1].abs().sum() > 0
    assert (code[..., -1] == 0).all()  # the manager's logits are never shared
    torch.testing.assert_close(model.activations(x4, "code"), code.flatten(1))
    # without the option the encoder has exactly the CCs' outputs
    assert tiny(shared_code=False).encoder.out3.bias.numel() == n_own
    assert model.encoder.out3.bias.numel() == n_own + POSE + 2


def test_refine_code_lowers_the_error_and_zero_steps_change_nothing():
    model = tiny()
    x = torch.rand(6, 1, 8, 8)
    code = model.code(x)
    comp, start, refined, errors = model.refine_code(x, code, 30, 0.05, track=True)
    torch.testing.assert_close(comp, code[..., -1].argmax(1))
    torch.testing.assert_close(start, code[torch.arange(6), comp, :-1])
    assert len(errors) == 31 and errors[-1] < 0.8 * errors[0]
    # the tracked error is the per-pixel MSE of the decoded code, the same as decoding it directly
    y = torch.nn.functional.one_hot(comp, 3).float()
    with torch.no_grad():
        rec = model.decode(refined[:, :POSE], refined[:, POSE:], y)["reconstruction"]
    assert abs(float((rec - x.reshape(6, 8, 8)).square().mean()) - errors[-1]) < 1e-6
    _, start0, same, errors0 = model.refine_code(x, code, 0, 0.05)
    torch.testing.assert_close(same, start0)
    assert errors0 == []


def test_code_target_term_trains_the_encoder_only():
    model = tiny(code_target_steps=3, code_target_lr=0.05, code_target_weight=2.0).train()
    model.hparams["noise"] = 0.0
    x = torch.rand(5, 1, 8, 8)
    torch.manual_seed(1)
    terms = model.loss_terms(x)
    # the term is weight x the squared distance from the chosen CC's code to the refined code
    code = model.code(x)
    comp, start, refined, _ = model.refine_code(x, code, 3, 0.05)
    expected = 2.0 * (start - refined).square().sum(1).mean()
    torch.testing.assert_close(terms["code_target"], expected)
    assert float(terms["code_target"].detach()) > 0
    model.zero_grad()
    terms["code_target"].backward()
    assert model.encoder.out3.weight_raw.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        if not name.startswith("encoder."):
            assert p.grad is None or p.grad.abs().sum() == 0, name
    assert "code_target" not in tiny().train().loss_terms(x)  # off by default: the thesis's training


def test_encoder_decay_shrinks_only_the_encoder_hidden_weights_by_lr_times_decay():
    """With zero gradients Adam and RMSprop move nothing, so what moves is the decay alone."""
    for optimizer in ("adam", "rmsprop"):
        model = tiny(encoder_decay=0.3, lr=0.01, hidden_lr=4.0, optimizer=optimizer)
        opt = model.make_optimizer()
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        opt.step()
        shrunk = {f"encoder.{layer}.weight_raw" for layer in ("l1", "l2", "l3")}
        for name, p in model.named_parameters():
            factor = (1 - 0.04 * 0.3) ** 2 if name in shrunk else 1.0
            torch.testing.assert_close(p.detach(), before[name] * factor, msg=f"{optimizer}: {name}")


def test_encoder_decay_zero_keeps_the_three_groups_and_follows_the_schedule():
    plain = tiny(encoder_decay=0.0).make_optimizer()
    assert len(plain.param_groups) == 3 and not plain._optimizer_step_pre_hooks
    model = tiny(encoder_decay=0.5, lr=0.01, hidden_lr=2.0)
    opt = model.make_optimizer()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)  # the rate halved, as a schedule does
    assert sched.get_last_lr()[-1] == 0.01
    w = model.encoder.l2.weight_raw
    before = w.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(w.detach(), before * (1 - 0.01 * 0.5))


def test_a_checkpoint_from_before_the_new_options_loads_as_it_was_trained():
    """Older files have no activation / shared_code / encoder_decay keys: logistic, no shared part."""
    old = tiny(activation="logistic", shared_code=False, encoder_decay=0.0)
    ckpt = old.to_checkpoint()
    for key in ("activation", "shared_code", "encoder_decay"):
        del ckpt["hparams"][key]
    loaded = CapsuleAE.from_checkpoint(ckpt)
    assert loaded.encoder.activation == "logistic" and not loaded.hparams["shared_code"]
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(loaded.reconstruct(x), old.reconstruct(x))
    assert tiny().hparams["activation"] == "relu" and tiny().hparams["shared_code"]  # today's defaults


def test_shared_distortion_false_shares_the_pose_only():
    model = tiny(shared_code=True, shared_distortion=False)
    n_own = 3 * (POSE + 2 + 1)
    assert model.encoder.out3.bias.numel() == n_own + POSE
    with torch.no_grad():
        for layer in (model.encoder.out1, model.encoder.out2, model.encoder.out3):
            layer.weight_raw[:n_own] = 0.0
        model.encoder.out3.bias[:n_own] = 0.0
    code = model.code(torch.rand(4, 1, 8, 8))
    torch.testing.assert_close(code[:, 0, :POSE], code[:, 2, :POSE])
    assert code[:, 0, :POSE].abs().sum() > 0
    assert (code[..., POSE:] == 0).all()  # distortions and logits are each CC's own


def test_forced_errors_are_the_reconstruction_errors_of_each_forced_component():
    from vizkit.models.capsule.evaluate import forced

    model = tiny()
    x = torch.rand(5, 1, 8, 8)
    out = forced(model, x, classify=lambda flat: (flat.sum(1) > 3).astype(int), chunk=4)
    assert out["errors"].shape == out["predicted"].shape == (5, 3)
    with torch.no_grad():
        for c in range(3):
            rec = model.forward_parts(x, component=torch.full((5,), c))["reconstruction"]
            want = (rec - x[:, 0]).square().flatten(1).mean(1).double().numpy()
            np.testing.assert_allclose(out["errors"][:, c], want, rtol=1e-5)
            np.testing.assert_array_equal(out["predicted"][:, c], (rec.flatten(1).double().numpy().sum(1) > 3))
