"""lstm-sentiment: a bidirectional-LSTM sentiment classifier for IMDB reviews."""

__version__ = "0.1.0"
