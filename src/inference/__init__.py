"""Using a trained model: SentimentPredictor, and the predict / evaluate commands."""

from src.inference.predictor import SentimentPredictor

__all__ = ["SentimentPredictor"]
