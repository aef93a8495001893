"""Calibration stage (installed as ``edge_xcnn.calib``): representative frames and INT8 Q/DQ."""
