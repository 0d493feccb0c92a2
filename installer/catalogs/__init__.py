"""What upstream publishes, as tables with their sources cited: NVIDIA driver branches and
their packages (driver.py), PyTorch's CUDA builds (pytorch.py), the students' pinned packages
(user_packages.py). Pure and standard library only: every folder may read them."""
