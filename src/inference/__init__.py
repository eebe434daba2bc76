"""Using trained models: SentimentPredictor, EnsemblePredictor, and the predict / evaluate commands."""

from src.inference.predictor import EnsemblePredictor, SentimentPredictor, load_predictor

__all__ = ["EnsemblePredictor", "SentimentPredictor", "load_predictor"]
