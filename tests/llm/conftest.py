"""Fixtures of the LLM tests."""

import pytest
from support.llm_harness import LLMStack


@pytest.fixture
def stack(tmp_path) -> LLMStack:
    """The local LLM stack with its index built, ready to answer.

    test_llm_pipeline.py overrides it with a stack without an index: its assets build one.
    """
    stack = LLMStack(tmp_path)
    stack.sync_index()
    return stack
