"""Quantization and the artifact (SPEC §2.8, §3.B).

intn (int-k codes) · clip (SDClip, Hessian SDClip, percentile, search) · fake_quant (STE for QAT) · classes (tensor
classes and per-class policy) · calib (Hessians from forward hooks; train or AR data) · gptq · lqer · mixed (the
records' export) · int8 (the baseline export) · prune (±1 pruning, decimal byte targets) · codecs (byte codecs) ·
entropy (context range coder) · bitpack · artifact (pickle-free container) · budget · report · export ·
posttrain (the export at the end of a training run).
"""
