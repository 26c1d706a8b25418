"""The questionnaire built step by step in the Getting started page."""
