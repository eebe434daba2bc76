"""Train a small model on a subset of IMDB and print its test accuracy.

    .venv/bin/python examples/quick_train.py --data-dir data/imdb --max-train-samples 2000
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import create_data_loaders  # noqa: E402
from src.exceptions import PipelineError  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.models.model_dir import save_model_directory  # noqa: E402
from src.training import create_trainer  # noqa: E402
from src.utils.seed import set_seed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="Quick training on a subset of IMDB.")
    parser.add_argument("--data-dir", default="data/imdb")
    parser.add_argument("--max-train-samples", type=int, default=2000)
    parser.add_argument("--max-test-samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--output-dir", default="runs/quick/model")
    parser.add_argument("--checkpoint-dir", default="runs/quick/checkpoints")
    args = parser.parse_args()

    set_seed(42)
    train_loader, val_loader, test_loader, preprocessor = create_data_loaders(
        args.data_dir, batch_size=32, max_length=200, max_train_samples=args.max_train_samples,
        max_test_samples=args.max_test_samples)
    model = LSTMClassifier(vocab_size=preprocessor.vocab_size, embedding_dim=64, hidden_dim=64)
    trainer = create_trainer(model, train_loader, val_loader, learning_rate=0.002,
                             checkpoint_dir=args.checkpoint_dir, preprocessor=preprocessor)
    trainer.train(epochs=args.epochs, early_stopping_patience=2)
    test = trainer.evaluate_model(test_loader)
    save_model_directory(args.output_dir, model, preprocessor, metrics={"test": test})
    print(f"test accuracy {test['accuracy']:.3f}; model directory: {args.output_dir}")


if __name__ == "__main__":
    try:
        main()
    except PipelineError as err:  # the project's errors are one line that says what to do
        sys.exit(f"error: {err}")
