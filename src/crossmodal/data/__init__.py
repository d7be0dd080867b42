"""Readers of image-caption collections and safe image loading."""
