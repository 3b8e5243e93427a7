"""The shared training loop: it optimises, validates, resumes exactly, and writes its files."""
import json

import torch

from ros2_sixdpose.train.loop import TrainConfig, learning_rate, train


class LineFit:
    """Fit y = 3x - 1 with one linear layer: small enough to check exact numbers."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(1, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

    def optimizers(self):
        return [self.optimizer]

    def training_step(self, batch, step):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"mse": loss.item()}

    def validate(self):
        return {"slope": self.model.weight.item(), "intercept": self.model.bias.item()}

    def train_mode(self, training):
        self.model.train(training)

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def export(self):
        return {"model": self.model.state_dict()}


def _loader():
    x = torch.linspace(-1, 1, 32)[:, None]
    # One batch per pass, so a resumed run sees the same batches as an uninterrupted one.
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, 3 * x - 1), batch_size=32)


def test_learning_rate_warms_up_then_decays_to_floor():
    config = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(0, config) == 0.1
    assert learning_rate(9, config) == 1.0
    assert abs(learning_rate(100, config) - 0.1) < 1e-12
    assert abs(learning_rate(55, config) - 0.55) < 1e-12  # half-way through the cosine


def test_train_converges_and_writes_files(tmp_path):
    config = TrainConfig(steps=300, lr=0.3, warmup_steps=5, eval_every=100, checkpoint_every=100)
    result = train(LineFit(), _loader(), config, tmp_path / "line.pt", run_info={"data": "y=3x-1"})
    assert abs(result.final_metrics["slope"] - 3.0) < 1e-3
    assert abs(result.final_metrics["intercept"] + 1.0) < 1e-3
    info = json.loads((tmp_path / "line.pt.json").read_text())
    assert info["steps"] == 300 and info["data"] == "y=3x-1"
    assert [v["step"] for v in info["val_history"]] == [100, 200, 300]
    assert info["val_history"][-1]["slope"] == result.final_metrics["slope"]
    assert (tmp_path / "line.pt.curves.png").stat().st_size > 1000
    weights = torch.load(tmp_path / "line.pt", weights_only=True)
    assert abs(weights["model"]["weight"].item() - 3.0) < 1e-3


def test_resume_continues_exactly(tmp_path):
    config = TrainConfig(steps=40, lr=0.05, warmup_steps=5, eval_every=20, checkpoint_every=20)
    straight = train(LineFit(), _loader(), config, tmp_path / "a.pt")
    train(LineFit(), _loader(), config, tmp_path / "b.pt", until=13)
    resumed = train(LineFit(), _loader(), config, tmp_path / "b.pt")
    assert resumed.history["step"] == list(range(1, 41))
    assert resumed.final_metrics == straight.final_metrics
    # The resumed run's JSON holds the validations and the training time of both sessions.
    info = json.loads((tmp_path / "b.pt.json").read_text())
    assert [v["step"] for v in info["val_history"]] == [20, 40]
    assert info["seconds_total"] is not None and info["seconds_total"] >= info["seconds_this_session"]
