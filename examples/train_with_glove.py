"""Train with GloVe word vectors and compare the coverage of the vocabulary.

    .venv/bin/python examples/train_with_glove.py --data-dir data/imdb --glove-cache-dir data/glove --glove-dim 50d

The vectors are downloaded into --glove-cache-dir on first use (or taken from a
glove.6B.zip / glove.6B.50d.txt already there).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.config import parse_glove_dim  # noqa: E402
from src.data import create_data_loaders  # noqa: E402
from src.exceptions import PipelineError  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.training import create_trainer, initialize_model_with_glove  # noqa: E402
from src.utils.seed import set_seed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="Training with GloVe embeddings.")
    parser.add_argument("--data-dir", default="data/imdb")
    parser.add_argument("--glove-cache-dir", default="data/glove")
    parser.add_argument("--glove-dim", default="50d", choices=["50d", "100d", "200d", "300d"])
    parser.add_argument("--max-train-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--checkpoint-dir", default="runs/glove/checkpoints")
    args = parser.parse_args()

    set_seed(42)
    train_loader, val_loader, test_loader, preprocessor = create_data_loaders(
        args.data_dir, batch_size=32, max_length=200, max_train_samples=args.max_train_samples,
        max_test_samples=1000)
    model = LSTMClassifier(vocab_size=preprocessor.vocab_size, embedding_dim=parse_glove_dim(args.glove_dim),
                           hidden_dim=64)
    stats = initialize_model_with_glove(model, preprocessor, corpus="6B", dimension=args.glove_dim,
                                        cache_dir=args.glove_cache_dir)
    print(f"GloVe covers {stats['coverage']:.1%} of {stats['vocab_size']} words; "
          f"a few without a vector: {', '.join(stats['oov_sample'][:5])}")
    trainer = create_trainer(model, train_loader, val_loader, learning_rate=0.002,
                             checkpoint_dir=args.checkpoint_dir, preprocessor=preprocessor)
    trainer.train(epochs=args.epochs, early_stopping_patience=2)
    print(f"test accuracy {trainer.evaluate_model(test_loader)['accuracy']:.3f}")


if __name__ == "__main__":
    try:
        main()
    except PipelineError as err:  # the project's errors are one line that says what to do
        sys.exit(f"error: {err}")
