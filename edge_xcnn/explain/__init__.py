"""Explanation quality: XCNN's heatmap against saliency baselines, measured with WSOL metrics.

``metrics`` is torch-free (numpy and OpenCV); ``methods``, ``causal``, ``sanity``, ``cost`` and
``compare`` need torch (the ``train`` extra) and, for the baselines, Captum (the ``compare`` extra).
"""
