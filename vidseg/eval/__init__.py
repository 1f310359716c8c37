"""Evaluation of a trained SimVP: its predictions (``predict``) and the competition's scoring of a
submission (``score``)."""
