"""Alerts: rules on monitors and drift scores, their states and history, and notifications."""
