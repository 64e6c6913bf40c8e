"""The ImageNet labels name their classes: no label reads like a description, compared with WordNet's names."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from tools.modelbuild.imagenet_labels import GLOSSES, imagenet_labels
from tools.modelbuild.package_data import imagenet_clean_names, imagenet_reference_names

# What a description has and a name lacks: an article first, a clause ("having", "for", "of a"), a list.
GLOSS_SIGNS = re.compile(
    r"^(a|an|the)\s|\b(having|with|without|for|used|that|which|whose)\b|\b(of|in|on) (a|an)\b|,", re.IGNORECASE
)
MAX_NAME_WORDS = 5  # "Bouvier des Flandres dog"; a parenthesis ("kite (bird of prey)") does not count


def reads_like_a_gloss(label: str, names: Sequence[str]) -> bool:
    """Whether ``label`` describes its class rather than names it; one of the class's WordNet ``names`` never does."""
    if label.casefold() in {name.casefold() for name in names}:
        return False
    words = re.sub(r"\s*\([^)]*\)", "", label).split()
    return bool(GLOSS_SIGNS.search(label)) or len(words) > MAX_NAME_WORDS


def glosses(labels: Sequence[str]) -> dict[int, str]:
    reference = imagenet_reference_names()
    return {i: label for i, label in enumerate(labels) if reads_like_a_gloss(label, reference[i])}


def test_no_shipped_label_reads_like_a_description() -> None:
    assert glosses(imagenet_labels()) == {}


def test_the_check_finds_the_three_glosses_of_the_clean_names() -> None:
    assert glosses(imagenet_clean_names()) == {class_id: gloss for class_id, (gloss, _) in GLOSSES.items()}


def test_class_282_is_a_tiger_cat() -> None:
    labels = imagenet_labels()
    assert (labels[281], labels[282], labels[285]) == ("tabby cat", "tiger cat", "Egyptian Mau")


def test_only_the_glosses_change_and_each_becomes_a_reference_name() -> None:
    labels, clean, reference = imagenet_labels(), imagenet_clean_names(), imagenet_reference_names()
    changed = {i: label for i, (label, before) in enumerate(zip(labels, clean, strict=True)) if label != before}
    assert changed == {282: "tiger cat", 638: "maillot", 998: "ear"}
    assert all(label in reference[i] for i, label in changed.items())


@pytest.mark.parametrize(
    ("label", "names", "gloss"),
    [
        ("a cat having a striped coat", ["tiger cat"], True),
        ("fruiting spike of a cereal plant", ["ear", "spike"], True),
        ("tights for gymnastics, a one-piece leotard, or a sport jersey", ["maillot"], True),
        ("the largest of the great apes living in forests", ["gorilla"], True),
        ("kite (bird of prey)", ["kite"], False),
        ("Bouvier des Flandres dog", ["Bouvier des Flandres"], False),
        ("hen of the woods mushroom", ["hen-of-the-woods"], False),
        ("bicycle-built-for-two", ["bicycle-built-for-two", "tandem bicycle"], False),
        ("tiger cat", ["tiger cat"], False),
    ],
)
def test_what_reads_like_a_gloss(label: str, names: list[str], gloss: bool) -> None:
    assert reads_like_a_gloss(label, names) is gloss
