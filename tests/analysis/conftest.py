"""Fixtures for the analysis tests: plain DataFrames, no database."""

import pytest

from evalsite.analysis.simulate import simulate_study


@pytest.fixture(scope="session")
def study():
    """One default simulated study (style-biased crowd, accurate experts, left bias)."""
    return simulate_study(seed=11)


@pytest.fixture(scope="session")
def factual_study():
    """A study where every prompt has references, so truth is the automatic check."""
    return simulate_study(seed=5, factual_share=1.0, n_prompts=300, expert_share=0.5)
