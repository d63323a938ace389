"""Session-wide test settings."""

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point the zoo's cache at a temporary directory: tests never write to the user's home.

    One directory for the whole session, so each bundled model is trained at most once per run.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURONSHAPLEY_CACHE", str(tmp_path_factory.mktemp("zoo-cache")))
        yield
