"""Session-wide test settings."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point the zoo's cache at a temporary directory: tests never write to the user's home.

    One directory for the whole session, so each bundled model is trained at most once per run.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURONSHAPLEY_CACHE", str(tmp_path_factory.mktemp("zoo-cache")))
        yield


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: the test models are tiny, and one thread is faster than several
    (no OpenMP start-up and barrier cost) and, unlike two, stays fast when the test run shares
    its cores with other processes (measured: 10x slower then)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
