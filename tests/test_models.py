"""Every net: shapes on two lengths, padding-independent logits, and learning a toy problem."""

import pytest
import torch

from ser.errors import SERError
from ser.models import CNN2D, CNNLSTM1D, CNNLSTM2D, M5, VAE, StackedLSTM
from ser.models.lstm import stack_frames

SR = 8000
#: (net factory, n_features, frames of the long and the short clip)
NETS = {
    "m5": (lambda n, c: M5(n, c, SR, channels=[8, 8, 16]), 1, 4000, 2300),
    "cnn_lstm1d": (
        lambda n, c: CNNLSTM1D(n, c, SR, channels=[8, 16], hidden_sizes=[16]),
        13,
        60,
        37,
    ),
    "cnn_lstm2d": (
        lambda n, c: CNNLSTM2D(n, c, SR, channels=[4, 8], hidden_sizes=[16]),
        16,
        60,
        37,
    ),
    "lstm": (lambda n, c: StackedLSTM(n, c, SR, hidden_sizes=[16, 8], dense=8), 13, 60, 37),
    "lstm_bi_mean_std": (
        lambda n, c: StackedLSTM(n, c, SR, [16], 0, bidirectional=True, pool="mean_std"),
        13,
        60,
        37,
    ),
    "lstm_stacked_frames": (  # 37 frames: the short clip's last step is one frame and padding
        lambda n, c: StackedLSTM(n, c, SR, [16], 8, bidirectional=True, pool="mean_std", stack=3),
        13,
        60,
        37,
    ),
    "vae": (lambda n, c: VAE(n, c, SR, hidden=[16, 8], latent_dim=4), 13, 60, 37),
}


@pytest.mark.parametrize("name", NETS)
def test_shapes_and_padding_does_not_change_logits(name):
    factory, n_features, long, short = NETS[name]
    torch.manual_seed(0)
    net = factory(5, n_features)
    net.train()
    net(torch.randn(4, n_features, long), torch.tensor([long, short, long, short]))  # stats
    net.eval()
    x = torch.randn(3, n_features, long)
    x[1, :, short:] = 100.0 * torch.randn(n_features, long - short)  # garbage in the padding
    lengths = torch.tensor([long, short, long])
    logits = net(x, lengths)
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()
    alone = net(x[1:2, :, :short], torch.tensor([short]))
    torch.testing.assert_close(logits[1], alone[0], atol=1e-4, rtol=1e-4)
    assert net(x).shape == (3, 5)  # lengths are optional


def toy_batch(n_features: int, frames: int, n: int = 16):
    """Two classes told apart by the mean level of the features: a learnable toy problem."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    x = torch.randn(n, n_features, frames, generator=g) + (2.0 * labels - 1.0)[:, None, None]
    return x, torch.full((n,), frames), labels


@pytest.mark.parametrize("name", NETS)
def test_tiny_net_learns_a_toy_problem(name):
    factory, n_features, long, _ = NETS[name]
    frames = 800 if name == "m5" else 24
    torch.manual_seed(0)
    net = factory(2, n_features)
    x, lengths, labels = toy_batch(n_features, frames)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(30):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(x, lengths), labels).backward()
        optimiser.step()
    net.eval()
    x, lengths, labels = toy_batch(n_features, frames)
    accuracy = (net(x, lengths).argmax(1) == labels).float().mean()
    assert accuracy >= 0.9


def test_m5_kernels_follow_the_sample_rate():
    at_8k, at_16k = M5(2, 1, 8000), M5(2, 1, 16000)
    assert (at_8k.first_kernel, at_8k.first_stride) == (80, 4)  # Dai et al.'s M5 at 8 kHz
    assert (at_16k.first_kernel, at_16k.first_stride) == (160, 8)
    assert at_16k.blocks[0][0].kernel_size == (160,)


def test_vae_parts():
    net = VAE(3, 6, SR, hidden=[8], latent_dim=2)
    out = net.encode_decode(torch.randn(2, 6, 20), torch.tensor([20, 11]))
    assert out.recon.shape == out.target.shape == (2, 6, 20)
    assert out.mean.shape == out.log_var.shape == (2, 2, 20)
    assert out.latent.shape == (2, 2)
    assert out.recon[1, :, 11:].abs().max() == 0
    torch.testing.assert_close(out.latent[1], out.mean[1, :, :11].mean(-1))


def test_lstm_rejects_bad_pool():
    with pytest.raises(SERError, match="pool"):
        StackedLSTM(2, 3, SR, pool="max")


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: CNN2D(4, 64, SR, channels=[0, 8]),
            r"CNN2D: channels=\[0, 8\] must be whole numbers >= 1",
        ),
        (lambda: CNN2D(4, 64, SR, dropout=2.0), r"CNN2D: dropout=2.0 must be in \[0, 1\)"),
        (
            lambda: CNN2D(4, 8, SR),
            "4 pooling blocks need at least 16 feature bins, the front-end gives 8",
        ),
        (lambda: M5(4, 1, SR, pool=0), "M5: pool=0 must be a whole number >= 1"),
        (lambda: StackedLSTM(4, 8, SR, dropout=float("nan")), "dropout=nan must be in"),
        (lambda: VAE(4, 8, SR, latent_dim=0), "VAE: latent_dim=0"),
        (lambda: CNNLSTM1D(4, 8, SR, hidden_sizes=[]), "hidden_sizes needs at least one layer"),
    ],
)
def test_net_settings_out_of_range_are_one_clear_error(build, message):
    with pytest.raises(SERError, match=message):
        build()


def test_stack_frames_concatenates_runs_of_frames():
    x = torch.arange(2 * 3 * 7, dtype=torch.float32).view(2, 3, 7)  # (B, C, F)
    stacked, lengths = stack_frames(x, torch.tensor([7, 4]), 3)
    assert stacked.shape == (2, 9, 3) and lengths.tolist() == [3, 2]  # ceil(7 / 3), ceil(4 / 3)
    torch.testing.assert_close(stacked[0, :, 1], x[0, :, 3:6].T.reshape(-1))  # frames 3, 4, 5
    torch.testing.assert_close(stacked[1, :3, 2], x[1, :, 6])  # frame 6, then zeros past the end
    assert stacked[1, 3:, 2].abs().max() == 0
    with pytest.raises(SERError, match="stack=0"):
        StackedLSTM(2, 3, SR, stack=0)
