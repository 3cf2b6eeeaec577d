"""Scorers shared by evaluation, training validation and preprocessing."""
