"""`sixdpose train retrieval` on a fresh synthetic split: weights, JSON, curves, and a resumed run."""
import json

import numpy as np

from ros2_sixdpose.cli import main
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.estimation.retrieval.bank import BankConfig, load_or_build_banks
from ros2_sixdpose.estimation.retrieval.crops import normalised_crops
from ros2_sixdpose.estimation.retrieval.embedding import EmbeddingScorer, load_encoder

from conftest import MODELS


def test_train_retrieval_writes_weights_and_resumes(fresh_split, tmp_path, one_torch_thread):
    split = fresh_split(6123)
    bank_dir = tmp_path / "banks"
    retrieval_yaml = tmp_path / "retrieval.yaml"
    # A 40-view bank keeps the test fast; the shipped one has 642.
    retrieval_yaml.write_text(
        f"type: retrieval\nretrieval:\n  cache_dir: {bank_dir}\n  bank:\n    viewpoints: 40\n"
    )
    train_yaml = tmp_path / "train.yaml"
    train_yaml.write_text("batch_size: 4\nval_instances: 3\n")
    out = tmp_path / "encoder.pt"
    common = ["train", "retrieval", "--data", str(split.root), "--split", "test", "--val-split", "test",
              "--out", str(out), "--config", str(train_yaml), "--retrieval-config", str(retrieval_yaml),
              "--models", str(MODELS), "--eval-every", "2"]
    assert main(common + ["--steps", "2"]) == 0
    info = json.loads(out.with_name(out.name + ".json").read_text())
    assert info["steps"] == 2 and info["device"] == "cpu" and info["scene_instances"] > 0
    assert 0.0 <= info["final_metrics"]["val_top1_15deg"] <= 1.0
    assert out.with_name(out.name + ".curves.png").is_file()
    assert main(common + ["--steps", "3"]) == 0  # resumes from the checkpoint at step 2
    assert json.loads(out.with_name(out.name + ".json").read_text())["steps"] == 3

    encoder = load_encoder(out)
    models = load_models(MODELS, [1])
    banks = load_or_build_banks(models, BankConfig(viewpoints=40), bank_dir)
    scorer = EmbeddingScorer(encoder, banks)
    # A template re-cropped scores highest against itself (measured 1.0 after rounding).
    bank = banks[1]
    crops = normalised_crops(bank.rgb[7], bank.mask[7], np.zeros(1), 64)
    scores = scorer.scores(1, crops)
    assert scores.shape == (1, 40)
    assert int(np.argmax(scores[0])) == 7 and scores[0, 7] > 0.98
