"""Datasets: on-disk readers, the shipped 5k MNIST, and the synthetic localization benchmark."""
