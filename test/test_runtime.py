"""Process settings every entry point applies (dualdiff_ros/runtime.py)."""
import pytest
import torch

from dualdiff_ros.runtime import THREADS_ENV, default_threads, limit_torch_threads


def test_threads_default_to_one_and_follow_the_environment(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv(THREADS_ENV, raising=False)
        assert default_threads() == 1 and limit_torch_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv(THREADS_ENV, "2")
        assert limit_torch_threads() == 2 and torch.get_num_threads() == 2
        assert limit_torch_threads(1) == 1 and torch.get_num_threads() == 1  # an explicit number wins
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("raw", ["0", "-3", "two"])
def test_a_bad_thread_count_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv(THREADS_ENV, raw)
    with pytest.raises(ValueError, match=f"{THREADS_ENV}='{raw}'"):
        default_threads()
