"""Readers that turn cgroupfs and procfs into Samples.  Nothing in this package imports Textual."""
