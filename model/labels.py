"""The one class order used everywhere in ferstream: FER2013's."""

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Folder and column names used by the datasets we read, mapped onto EMOTIONS.
# CK+ and FER+ spell some classes differently; contempt has no FER2013 class and is left out.
ALIASES: dict[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
}


def canonical_name(name: str) -> str | None:
    """The EMOTIONS spelling of a class name, or None when it is not one of the seven."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in EMOTIONS else None


def class_indices(names: str | list[str] | tuple[str, ...]) -> list[int]:
    """Indices into EMOTIONS for a comma-separated list or sequence of class names."""
    items = names.split(",") if isinstance(names, str) else list(names)
    indices = []
    for item in items:
        name = canonical_name(item)
        if name is None:
            raise ValueError(f"unknown class {item!r}; expected some of {', '.join(EMOTIONS)}")
        indices.append(EMOTIONS.index(name))
    return indices
