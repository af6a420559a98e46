"""Tests of the email notifications."""
