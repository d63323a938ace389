"""What users do with Neuron Shapley values: removal curves, repair, targeted studies."""
