"""Tests of neuronshapley.report."""
