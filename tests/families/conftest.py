import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Two cores shared by many processes: one thread per test process is the fastest here."""
    torch.set_num_threads(1)
