"""Models."""

from src.models.lstm_model import LSTMClassifier, LSTMConfig

__all__ = ["LSTMClassifier", "LSTMConfig"]
