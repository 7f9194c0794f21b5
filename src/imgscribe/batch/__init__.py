"""Describing many images: sources, records and (later) writers, resume and scale-out."""
