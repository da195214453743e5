"""The emotion model: class names, the network registry, the model file format and its loader."""
