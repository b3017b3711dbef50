"""Relevancy maps (Chefer et al., ICCV 2021) and their baselines; LRP rules come next to them."""

from .maps import MAP_METHODS, Relevance, map_needs, propagate, relevance_from_capture, relevance_maps

__all__ = ["MAP_METHODS", "Relevance", "map_needs", "propagate", "relevance_from_capture", "relevance_maps"]
