"""The frame path without gRPC: decode -> detect -> align/crop -> classify, face tracks, and its settings."""
