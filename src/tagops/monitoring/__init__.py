"""Monitoring: reference statistics, drift statistics, shadow reports and alerts."""
