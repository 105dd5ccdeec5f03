"""Monitoring: live metrics, drift, alerts and the retraining policy."""
