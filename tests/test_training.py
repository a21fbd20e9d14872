import pytest
import torch

from utils import train
from utils.training import lr_multiplier


class Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, x, y):
        return torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)


def make_data(n=256):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([2.0, -1.0, 0.5]) + 0.3
    return [{"x": a, "y": b} for a, b in zip(x, y)]


def collate(examples):
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


def test_learns_a_linear_map_and_returns_history():
    model = Regression()
    history = train(model, make_data(), collate_fn=collate, batch_size=32, epochs=20, lr=0.05,
                    loss_fn=lambda m, b: m(**b), weight_decay=0.0, progress=False,
                    eval_fn=lambda m: {"bias": m.linear.bias.item()}, eval_every=40)
    assert list(history.columns[:5]) == ["step", "epoch", "loss", "lr", "seconds"]
    assert len(history) == 20 * 8 and history.epoch.max() == 20
    assert history.loss.iloc[-10:].mean() < 0.01 * history.loss.iloc[:5].mean()
    assert torch.allclose(model.linear.weight, torch.tensor([[2.0, -1.0, 0.5]]), atol=0.05)
    evals = history.dropna(subset=["bias"])
    assert list(evals.step) == [40, 80, 120, 160]
    assert evals.bias.iloc[-1] == pytest.approx(0.3, abs=0.05)
    # warm-up then cosine decay to (almost) zero
    assert history.lr.iloc[0] < history.lr.max() and history.lr.iloc[-1] < 1e-3 * history.lr.max()
    # the rate after each step is the one utils.training.lr_multiplier states for the next
    assert history.lr.tolist() == pytest.approx([0.05 * lr_multiplier(s, len(history)) for s in history.step])


def test_same_seed_same_result_and_max_steps():
    def run():
        torch.manual_seed(1)
        return train(Regression(), make_data(), collate_fn=collate, max_steps=7, seed=3,
                     loss_fn=lambda m, b: m(**b), progress=False).loss.tolist()

    runs = [run(), run()]
    assert runs[0] == runs[1] and len(runs[0]) == 7


def test_default_loss_is_the_model_loss():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    data = [{"input_ids": torch.tensor([1, i % 50, 2]), "labels": torch.tensor(i % 2)}
            for i in range(16)]
    history = train(model, data, collate_fn=collate, batch_size=8, epochs=1, progress=False)
    assert len(history) == 2 and history.loss.notna().all()


@pytest.mark.parametrize("kwargs, message", [({"batch_size": 0}, "batch_size"),
                                             ({"lr": -1}, "lr"), ({"max_steps": 0}, "max_steps")])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train(Regression(), make_data(8), collate_fn=collate, progress=False, **kwargs)


def test_empty_data_is_refused():
    with pytest.raises(ValueError, match="empty"):
        train(Regression(), [], progress=False)
