"""VSML (Kirsch & Schmidhuber, NeurIPS 2021, arXiv 2012.14905): every weight a tiny LSTM sharing V_M.

Modules: `cell` (the sub-RNN's types and math, shared by all below), `learner` (the `VSML` learner and its dense
fast path), `conv` (the conv layer), `pallas` (a dense layer's micro ticks as one fused GPU kernel), `reference`
(the literal formulation, a test oracle) and `codec` (how backprop sits in VSML, for learning-algorithm cloning).
They import `cell`, never each other's internals; `learner` dispatches to `conv` and `pallas`.
"""

from vsml.learners.vsml.cell import LayerPlan, SubRNNParams, VSMLMeta, count_parameters
from vsml.learners.vsml.learner import VSML, VSMLState

__all__ = ["VSML", "LayerPlan", "SubRNNParams", "VSMLMeta", "VSMLState", "count_parameters"]
