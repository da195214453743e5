"""The frame path without gRPC: decode -> detect -> crop -> classify -> annotate, and its settings."""
