"""Built-in model flavors; each module imports its library only when a model of it is saved or loaded."""

from modelyard.models.flavors.base import Flavor, flavor_for, get_flavor

__all__ = ["Flavor", "flavor_for", "get_flavor"]
