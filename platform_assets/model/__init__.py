"""The model: training, evaluation against the champion, promotion (three groups)."""
