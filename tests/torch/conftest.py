"""The models here are tiny: one thread is faster than several (no OpenMP start-up and barrier
cost), and stays fast when the test run shares its cores with other processes."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
