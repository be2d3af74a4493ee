"""LongNet: dilated attention (Ding et al. 2023, arXiv 2307.02486), a LongNet language
model and its bounded memory of an ever-growing token stream."""
