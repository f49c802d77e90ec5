"""Evaluation harness: datasets, judges, runs and reports. Uses app/ like any client."""
