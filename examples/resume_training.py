"""Continue a run from its newest checkpoint, e.g. after examples/quick_train.py.

    .venv/bin/python examples/resume_training.py --checkpoint-dir runs/quick/checkpoints --epochs 2

The data must be loaded with the same settings and the checkpoint's vocabulary,
so the token ids mean the same words as before.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import TextPreprocessor, create_data_loaders  # noqa: E402
from src.exceptions import PipelineError  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.training import create_checkpoint_manager, create_trainer  # noqa: E402
from src.utils.checkpoint_io import load_state  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="Resume training from the newest checkpoint.")
    parser.add_argument("--data-dir", default="data/imdb")
    parser.add_argument("--checkpoint-dir", default="runs/quick/checkpoints")
    parser.add_argument("--max-train-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2, help="additional epochs")
    args = parser.parse_args()

    latest = create_checkpoint_manager(args.checkpoint_dir).latest_checkpoint()
    if latest is None:
        sys.exit(f"no checkpoint in {args.checkpoint_dir}; run examples/quick_train.py first")
    state = load_state(latest)
    if state.get("preprocessor") is None:
        sys.exit(f"{latest} holds no vocabulary; train with create_trainer(..., preprocessor=preprocessor)")
    preprocessor = TextPreprocessor.from_dict(state["preprocessor"])
    train_loader, val_loader, _, _ = create_data_loaders(  # the saved preprocessor sets max_length and truncation
        args.data_dir, batch_size=32, max_train_samples=args.max_train_samples, max_test_samples=10,
        preprocessor=preprocessor)
    model = LSTMClassifier.from_config(state["model_config"])
    trainer = create_trainer(model, train_loader, val_loader, learning_rate=0.002,
                             checkpoint_dir=args.checkpoint_dir, preprocessor=preprocessor)
    history = trainer.resume_training(latest, additional_epochs=args.epochs)
    print(f"resumed from {latest.name}; now {history['epochs_completed']} epochs, "
          f"best validation accuracy {history['best_val_accuracy']:.3f}")


if __name__ == "__main__":
    try:
        main()
    except PipelineError as err:  # the project's errors are one line that says what to do
        sys.exit(f"error: {err}")
