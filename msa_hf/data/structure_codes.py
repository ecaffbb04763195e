# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Standard codes for named structures: what a written segment says it *is*, beyond its name.

A DICOM Segmentation describes each segment by two coded concepts, a category (anatomical structure,
morphologically abnormal structure, physical object, tissue) and a type (liver, neoplasm, catheter), and may
add a laterality to the type. PACS viewers and 3D Slicer show, colour and search segments by these codes, and
3D Slicer keeps the same codes in a segmentation file's `TerminologyEntry` tag. The DICOM standard lists the
concepts a segment's type is chosen from in its context groups: CID 7192 (anatomical structures), CID 7194
(morphologically abnormal structures), CID 7193 (physical objects) and CID 7166 (common tissues), each the
types of one category of CID 7150; laterality is CID 244. pydicom ships these groups.

`structure_code` finds a structure's concept by its name, as label tables and masks' file names give it:
the name's words (split at spaces, punctuation and lower-to-upper case changes, case aside) equal to a
concept's meaning's words, after British spellings (tumour, grey, oesophagus, haemorrhage, oedema) and names
in common use (`SYNONYMS`: tumor, caudate, pallidum, CSF, ...). A left or right word (left, l, lt, right, r,
rt) that the concept's meaning does not itself hold (Left atrium does) becomes the laterality, and a last
word in the plural is tried in the singular ("lateral ventricles"). A name of an abnormal structure after an
anatomical one ("liver tumour", "left kidney cyst") is that abnormal structure with the anatomical one as its
anatomic region. Numbers at the end of a name (one of several lesions) are left out. A name that matches no
concept gets no code, and its writer keeps the generic one (`generic_code`: Tissue).

Reading goes the other way: `values_by_concept` lets a label table's name find a file's structure named
otherwise (`Kidney_L` for the table's `left kidney`; a DICOM-SEG segment by its own codes), one to one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.sr.coding import Code

# the category each context group's types belong to (CID 7150), in the order a concept in two groups is
# read (Artery is both an anatomical structure and a common tissue: it is read as the structure)
CATEGORY_GROUPS = (
    (7194, "MorphologicallyAbnormalStructure"),
    (7193, "PhysicalObject"),
    (7192, "AnatomicalStructure"),
    (7166, "Tissue"),
)
BRITISH_SPELLINGS = {
    "tumour": "tumor",
    "grey": "gray",
    "oesophagus": "esophagus",
    "haemorrhage": "hemorrhage",
    "haematoma": "hematoma",
    "oedema": "edema",
}
# names in common use for a concept whose meaning in the standard says it otherwise
SYNONYMS = {
    "tumor": "neoplasm",
    "metastasis": "neoplasm secondary",
    "metastases": "neoplasm secondary",
    "urinary bladder": "bladder",
    "small bowel": "small intestine",
    "large bowel": "large intestine",
    "csf": "cerebrospinal fluid",
    # FreeSurfer's and FSL's names of deep grey matter and the hemispheres
    "caudate": "caudate nucleus",
    "pallidum": "globus pallidus",
    "hemisphere": "cerebral hemisphere",
}
LATERALITY_WORDS = {"left": "Left", "l": "Left", "lt": "Left", "right": "Right", "r": "Right", "rt": "Right"}


@dataclass(frozen=True)
class StructureCode:
    """A structure's coded concepts, each a pydicom `Code`: its `category` (CID 7150) and `type`; the
    `laterality` of the type (CID 244) where the name gives a side the type does not hold; for an abnormal
    structure named with the anatomical structure it lies in, that structure as its anatomic `region`, with
    the region's own `region_laterality`."""

    category: Code
    type: Code
    laterality: Code | None = None
    region: Code | None = None
    region_laterality: Code | None = None


def _words(text: str) -> tuple[str, ...]:
    """`text`'s words, lower case, with British spellings made American: split at every character that is not
    a letter or digit (of any script) and where a lower-case letter meets an upper-case one (`LeftKidney`)."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    words = re.findall(r"[^\W_]+", spaced.casefold())  # letters of any script stay in their word (Läsion)
    return tuple(BRITISH_SPELLINGS.get(word, word) for word in words)


@cache
def _concepts() -> dict[tuple[str, ...], StructureCode]:
    """Every segmentation type of `CATEGORY_GROUPS` by its meaning's words. Where two concepts of one group
    share a meaning (Descending aorta), the one whose pydicom keyword spells the meaning is kept. Empty
    without pydicom (the `medical` and `dicom` extras): a 3D Slicer segmentation is then written uncoded."""
    try:
        from pydicom.sr.codedict import codes
    except ImportError:
        return {}

    found: dict[tuple[str, ...], tuple[int, bool, StructureCode]] = {}
    for rank, (group, category) in enumerate(CATEGORY_GROUPS):
        concepts = getattr(codes, f"cid{group}")
        category_code = getattr(codes.cid7150, category)
        for keyword in concepts.dir():
            code = getattr(concepts, keyword)
            spells = keyword.casefold() == re.sub(r"[^0-9a-z]", "", code.meaning.casefold())
            key = _words(code.meaning)
            earlier = found.get(key)
            if earlier is None or (earlier[0] == rank and spells and not earlier[1]):
                found[key] = (rank, spells, StructureCode(category_code, code))
    return {key: code for key, (_, _, code) in found.items()}


def _lookup(words: tuple[str, ...]) -> StructureCode | None:
    """The concept whose meaning is `words`, through `SYNONYMS`, or with the last word in the singular."""
    concepts = _concepts()
    forms = [words]
    if words and len(words[-1]) > 3 and words[-1].endswith("s"):
        forms.append((*words[:-1], words[-1][:-1]))
    for form in forms:
        synonym = SYNONYMS.get(" ".join(form))
        for candidate in (form, tuple(synonym.split()) if synonym else None):
            if candidate and candidate in concepts:
                return concepts[candidate]
    return None


def _with_side(words: tuple[str, ...]) -> StructureCode | None:
    """The concept `words` name whole (Left atrium), else the one they name without their left or right words,
    with that side as its laterality (one side only: a name with both is none of these)."""
    whole = _lookup(words)
    if whole is not None:
        return whole
    sides = {LATERALITY_WORDS[word] for word in words if word in LATERALITY_WORDS}
    found = (
        _lookup(tuple(word for word in words if word not in LATERALITY_WORDS)) if len(sides) == 1 else None
    )
    if found is None:
        return None
    from pydicom.sr.codedict import codes

    return StructureCode(found.category, found.type, getattr(codes.cid244, sides.pop()))


def structure_code(name: str | None) -> StructureCode | None:
    """The standard concept that the structure name `name` denotes (see the module's docstring): its category,
    type and laterality, and for an abnormal structure named after the anatomical structure it lies in
    ("liver tumour"), that structure as its region; None where no concept matches (or no name is given).

    >>> code = structure_code("Kidney_L")
    >>> code.category.meaning, code.type.meaning, code.laterality.meaning
    ('Anatomical Structure', 'Kidney', 'Left')
    """
    words = _words(name or "")
    numbered = words
    while numbered and numbered[-1].isdigit():  # "lesion 2": one of several
        numbered = numbered[:-1]
    for form in dict.fromkeys((words, numbered)):  # a meaning may end in a number itself
        found = _named(form) if form else None
        if found is not None:
            return found
    return None


def _named(words: tuple[str, ...]) -> StructureCode | None:
    """The concept `words` name (`_with_side`), else an abnormal structure named after the anatomical structure
    it lies in (a side anywhere in the name is the region's)."""
    found = _with_side(words)
    if found is not None or not _concepts():
        return found
    from pydicom.sr.codedict import codes

    for split in range(1, len(words)):
        tail = words[split:]
        sides = tuple(word for word in tail if word in LATERALITY_WORDS)
        region = _with_side(words[:split] + sides)
        finding = _lookup(tuple(word for word in tail if word not in LATERALITY_WORDS))
        if (
            region is not None
            and finding is not None
            and region.category == codes.cid7150.AnatomicalStructure
            and finding.category == codes.cid7150.MorphologicallyAbnormalStructure
        ):
            return StructureCode(
                finding.category, finding.type, region=region.type, region_laterality=region.laterality
            )
    return None


def generic_code() -> StructureCode:
    """The code a structure whose name matches no concept is written with: Tissue, of category Tissue (what
    the standard's segmentation examples use where nothing more is known)."""
    from pydicom.sr.codedict import codes

    return StructureCode(codes.cid7150.Tissue, codes.SCT.Tissue)


def describe_code(code: StructureCode | None) -> str:
    """`code` in words, as a summary reports it: "Kidney, Left (SCT 64033007): Anatomical Structure", "Cyst
    (SCT 367643001) in Kidney, Left (SCT 64033007): Morphologically Abnormal Structure"; None: the generic
    code, said so."""
    if code is None:
        return (
            f"{describe_code(generic_code())}, the generic code: the name denotes no concept of the standard"
        )

    def named(concept: Code, side: Code | None) -> str:
        where = f", {side.meaning}" if side is not None else ""
        return f"{concept.meaning}{where} ({concept.scheme_designator} {concept.value})"

    region = f" in {named(code.region, code.region_laterality)}" if code.region is not None else ""
    return f"{named(code.type, code.laterality)}{region}: {code.category.meaning}"


UNCODED = "none: the name denotes no concept of the standard"


def written_codes(
    values: Iterable[int], names: Mapping[int, str] | None, generic: bool = True
) -> dict[int, str]:
    """`{label value: describe_code(...)}` of the structures `values` named by `names`, as a file that codes
    them codes them: a DICOM-SEG, whose segments must all be coded, with the generic code where a name denotes
    nothing (`generic`); a 3D Slicer segmentation or an RT structure set, which leave such a structure
    uncoded (`UNCODED`). Empty without pydicom."""
    if not _concepts():
        return {}
    given = names or {}
    codes = {int(value): structure_code(given.get(value)) for value in values}
    return {
        value: describe_code(code) if code is not None or generic else UNCODED
        for value, code in codes.items()
    }


def read_dicom_codes(item: Any, type_keyword: str) -> StructureCode | None:
    """The codes a DICOM item gives its structure, as a DICOM-SEG's segment (`type_keyword`
    "SegmentedPropertyTypeCodeSequence") and an RT structure set's ROI observation
    ("RTROIIdentificationCodeSequence") give them: the segmented property category, the type with its
    laterality modifier, and the first anatomic region with its laterality; None where the item gives no
    category or no type."""
    from pydicom.sr.coding import Code

    def first(parent: Any, keyword: str) -> Any:
        sequence = (parent.get(keyword) or []) if parent is not None else []
        return sequence[0] if len(sequence) else None

    def code(concept: Any) -> Code | None:
        if concept is None or "CodeValue" not in concept:
            return None
        return Code(
            str(concept.CodeValue), str(concept.CodingSchemeDesignator), str(concept.get("CodeMeaning", ""))
        )

    kind, category = first(item, type_keyword), first(item, "SegmentedPropertyCategoryCodeSequence")
    if code(kind) is None or code(category) is None:
        return None
    region = first(item, "AnatomicRegionSequence")
    return StructureCode(
        code(category),
        code(kind),
        code(first(kind, "SegmentedPropertyTypeModifierCodeSequence")),
        code(region),
        code(first(region, "AnatomicRegionModifierSequence")),
    )


def write_dicom_codes(item: Any, code: StructureCode, type_keyword: str) -> None:
    """Set `code` on the DICOM item `item` (a pydicom `Dataset`) as `read_dicom_codes` reads it: one item
    each in the segmented property category and in `type_keyword` (the type, its laterality as the type's
    modifier), and an abnormal structure's region in the anatomic region sequence with the region's
    laterality as its modifier."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def coded(concept: Code, modifier_keyword: str, modifier: Code | None) -> Dataset:
        element = Dataset()
        element.CodeValue = concept.value
        element.CodingSchemeDesignator = concept.scheme_designator
        element.CodeMeaning = concept.meaning
        if modifier is not None:
            setattr(element, modifier_keyword, Sequence([coded(modifier, "", None)]))
        return element

    item.SegmentedPropertyCategoryCodeSequence = Sequence([coded(code.category, "", None)])
    kind = coded(code.type, "SegmentedPropertyTypeModifierCodeSequence", code.laterality)
    setattr(item, type_keyword, Sequence([kind]))
    if code.region is not None:
        item.AnatomicRegionSequence = Sequence(
            [coded(code.region, "AnatomicRegionModifierSequence", code.region_laterality)]
        )


def concept_key(code: StructureCode | None) -> tuple | None:
    """What makes two codes one structure: the type, its laterality, the region and the region's laterality,
    each as `(scheme, value)` (meanings and the category aside; SNOMED RT's identifiers as SNOMED CT's); None
    for no code and for the generic one, which says nothing of what a structure is."""
    if code is None or code.type == generic_code().type:
        return None
    # SNOMED's older identifiers (scheme SRT, as older 3D Slicer and DICOM files write them) as today's
    from pydicom.sr.coding import snomed_mapping

    def key(concept: Code | None) -> tuple[str, str] | None:
        if concept is None:
            return None
        if concept.scheme_designator == "SRT" and concept.value in snomed_mapping["SRT"]:
            return ("SCT", snomed_mapping["SRT"][concept.value])
        return (concept.scheme_designator, concept.value)

    return tuple(key(c) for c in (code.type, code.laterality, code.region, code.region_laterality))


def _concept_of(name: str, codes: Mapping[str, StructureCode | None] | None) -> tuple | None:
    """The concept (`concept_key`) of the structure `name`: its file's own code for it (`codes[name]`), else
    the one its name denotes."""
    return concept_key((codes or {}).get(name)) or concept_key(structure_code(name))


def values_by_concept(
    values: Mapping[str, int],
    found: Iterable[str],
    found_codes: Mapping[str, StructureCode | None] | None = None,
) -> dict[str, int]:
    """`values` (a label table's `{name: value}`) with each name of `found` (a file's structures) that it does
    not hold, but whose concept is the concept of one of its names, given that name's value: `Kidney_L` read
    as the table's `left kidney`, a DICOM-SEG segment labelled `Leber` and coded Liver as its `liver`. A
    structure's concept is `found_codes[name]` where the file codes it, else the one its name denotes
    (`structure_code`). Only one to one: a concept that two table names, or two unmatched found names, share
    matches nothing (two lesions stay apart), and the generic code matches nothing."""
    matched = dict(values)
    unknown = [name for name in dict.fromkeys(found) if name not in values]
    if not unknown or not _concepts():  # every name found in the table (the usual case): nothing to look up
        return matched

    table: dict[tuple, list[str]] = {}
    for name in values:
        key = _concept_of(name, None)
        if key is not None:
            table.setdefault(key, []).append(name)
    unmatched: dict[tuple, list[str]] = {}
    for name in unknown:
        key = _concept_of(name, found_codes)
        if key is not None:
            unmatched.setdefault(key, []).append(name)
    for key, names in unmatched.items():
        if len(names) == 1 and len(table.get(key, [])) == 1:
            matched[names[0]] = values[table[key][0]]
    return matched


def names_by_concept(
    groups: Iterable[Iterable[str]], codes: Mapping[str, StructureCode | None] | None = None
) -> dict[str, str]:
    """`{name: the name it is joined to}` for the structure names of `groups` (each one file's or one case's)
    that denote one concept named otherwise elsewhere: `Kidney_L` in some cases and `left kidney` in others
    are one structure, named as most groups name it (a tie: the first in alphabetical order). A name's concept
    is `codes[name]` where its file codes it (a DICOM-SEG segment `Leber` coded Liver), else the one the name
    denotes (`structure_code`). Names are joined only where no group holds two of them (two lesions of one
    case stay apart), and the generic code joins nothing. Names not joined are not in the result; empty
    without pydicom."""
    sets = [set(group) for group in groups]
    if not _concepts():
        return {}
    count = Counter(name for group in sets for name in group)
    by_key: dict[tuple, list[str]] = {}
    for name in sorted(count):
        key = _concept_of(name, codes)
        if key is not None:
            by_key.setdefault(key, []).append(name)
    joined = {}
    for names in by_key.values():
        if len(names) < 2 or any(len(group.intersection(names)) > 1 for group in sets):
            continue
        kept = min(names, key=lambda name: (-count[name], name))
        joined.update({name: kept for name in names if name != kept})
    return joined


def joined_names_note(joined: Mapping[str, str]) -> str | None:
    """A report's note of the names `names_by_concept` joined, or None where it joined none."""
    if not joined:
        return None
    kept: dict[str, list[str]] = {}
    for name, to in sorted(joined.items()):
        kept.setdefault(to, []).append(name)
    listed = "; ".join(f"{', '.join(names)} as {to!r}" for to, names in sorted(kept.items()))
    return (
        f"structures named otherwise in some cases are read as one, by what the names denote: {listed}. A label "
        "table (labels.json) that names them keeps them apart."
    )
