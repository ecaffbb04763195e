# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""What written segments say a structure is: the DICOM standard's codes found from structure names
(`structure_codes`), written into DICOM-SEG segment descriptions and 3D Slicer terminology entries, and one
colour per structure across a DICOM-SEG, an RT structure set and a 3D Slicer segmentation."""

from __future__ import annotations

import numpy as np
import pytest

from msa_hf.data.structure_codes import CATEGORY_GROUPS, _words, generic_code, structure_code
from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.testing import BoxFillSam

pydicom = pytest.importorskip("pydicom")

ANATOMY, ABNORMAL, OBJECT = "91723000", "49755003", "260787004"  # CID 7150's categories
LEFT, RIGHT = "7771000", "24028007"  # CID 244
LIVER, KIDNEY, NEOPLASM, CYST = "10200004", "64033007", "108369006", "367643001"


def _values(name: str) -> tuple | None:
    """`structure_code(name)` as the code values it holds: category, type, laterality, region, region's
    laterality (None for each one absent)."""
    code = structure_code(name)
    if code is None:
        return None
    concepts = (code.category, code.type, code.laterality, code.region, code.region_laterality)
    return tuple(concept.value if concept is not None else None for concept in concepts)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("liver", (ANATOMY, LIVER, None, None, None)),
        ("Liver", (ANATOMY, LIVER, None, None, None)),
        # a side written in any of the ways label tables and file names write it
        ("left kidney", (ANATOMY, KIDNEY, LEFT, None, None)),
        ("Kidney_L", (ANATOMY, KIDNEY, LEFT, None, None)),
        ("kidney-rt", (ANATOMY, KIDNEY, RIGHT, None, None)),
        ("RightKidney", (ANATOMY, KIDNEY, RIGHT, None, None)),
        ("adrenal_gland_left", (ANATOMY, "23451007", LEFT, None, None)),
        # a meaning that holds its side is that concept, no modifier (Left atrium)
        ("left atrium", (ANATOMY, "82471001", None, None, None)),
        # British spellings, plurals, synonyms, FreeSurfer's names
        ("oesophagus", (ANATOMY, "32849002", None, None, None)),
        ("lateral ventricles", (ANATOMY, "66720007", None, None, None)),
        ("Left-Lateral-Ventricle", (ANATOMY, "66720007", LEFT, None, None)),
        ("Right-Caudate", (ANATOMY, "11000004", RIGHT, None, None)),
        ("left pallidum", (ANATOMY, "14738005", LEFT, None, None)),
        ("grey matter", (ANATOMY, "389081007", None, None, None)),
        ("urinary_bladder", (ANATOMY, "89837001", None, None, None)),
        ("CSF", (ANATOMY, "65216001", None, None, None)),
        # abnormal structures, alone, numbered and in the structure they lie in
        ("tumour", (ABNORMAL, NEOPLASM, None, None, None)),
        ("lesion 2", (ABNORMAL, "52988006", None, None, None)),
        ("metastases", (ABNORMAL, "14799000", None, None, None)),
        ("liver tumour", (ABNORMAL, NEOPLASM, None, LIVER, None)),
        ("left kidney cyst", (ABNORMAL, CYST, None, KIDNEY, LEFT)),
        ("kidney tumor right", (ABNORMAL, NEOPLASM, None, KIDNEY, RIGHT)),
        ("catheter", (OBJECT, "19923001", None, None, None)),
    ],
)
def test_a_structure_name_gives_its_standard_codes(name, expected):
    assert _values(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "structure 3",
        "class_1",
        "blob",
        "left right kidney",
        "tumour liver",
        "",
        None,
        "L",
        "2",
        "Läsion",
        "肝臓",
    ],
)
def test_a_name_that_denotes_no_concept_gets_no_code(name):
    """Unknown words, auto-generated names, both sides at once, a region after its finding, a side alone,
    words beyond ASCII."""
    assert structure_code(name) is None


def test_a_name_is_split_into_words_as_people_write_them():
    """At separators and run-together capitals, case aside, British spellings made American; a letter beyond
    ASCII stays in its word (`Läsion` is not the side "l" and "sion")."""
    assert _words("Left-Lateral_Ventricle") == ("left", "lateral", "ventricle")
    assert _words("LeftKidney 2") == ("left", "kidney", "2")
    assert _words("liver tumour, grey") == ("liver", "tumor", "gray")
    assert _words("Läsion des Rückenmarks") == ("läsion", "des", "rückenmarks")


def test_every_segmentation_type_of_the_standard_is_found_by_its_meaning():
    """Each concept of the four groups of types, named by its own meaning, is found as itself (or as the one
    concept of the same meaning, case aside, that the index keeps), with no side and no region."""
    from pydicom.sr.codedict import codes

    count = 0
    for group, _ in CATEGORY_GROUPS:
        concepts = getattr(codes, f"cid{group}")
        for keyword in concepts.dir():
            concept = getattr(concepts, keyword)
            found = structure_code(concept.meaning)
            assert found is not None, concept
            assert found.type.meaning.casefold() == concept.meaning.casefold(), concept
            assert found.laterality is None and found.region is None, concept
            count += 1
    assert count > 850


def test_the_generic_code_is_tissue():
    code = generic_code()
    assert (code.category.value, code.type.value) == ("85756007", "85756007")


# what the summary of a file that codes its segments says of `coded_prompts`, by label value
EXPECTED_SUMMARY = {
    1: "Liver (SCT 10200004): Anatomical Structure",
    2: "Kidney, Left (SCT 64033007): Anatomical Structure",
    3: "Cyst (SCT 367643001) in Kidney, Left (SCT 64033007): Morphologically Abnormal Structure",
    4: "Tissue (SCT 85756007): Tissue, the generic code: the name denotes no concept of the standard",
}


@pytest.fixture
def coded_prompts():
    """Four structures on the block series, each coded differently: a plain organ, an organ with a side, an
    abnormal structure in an organ with a side, and a name no concept matches."""
    return [
        Prompt(box=[2, 2, 10, 10], slice=2, name="liver"),
        Prompt(box=[12, 2, 20, 10], slice=2, name="Kidney_L"),
        Prompt(box=[2, 12, 10, 18], slice=3, name="left kidney cyst"),
        Prompt(box=[12, 12, 20, 18], slice=3, name="blob"),
    ]


def test_dicom_seg_segments_carry_the_codes_their_names_denote(block_series, coded_prompts, tmp_path):
    """Each segment's category and type, the type's laterality modifier, the anatomic region with its own
    laterality, as the standard nests them; an unknown name stays Tissue; the segment labels are the names."""
    pytest.importorskip("highdicom")
    summary = predict_file(
        BoxFillSam(32), block_series, tmp_path / "seg.dcm", coded_prompts, dicom_output="seg"
    )
    assert summary["codes"] == EXPECTED_SUMMARY
    segments = pydicom.dcmread(tmp_path / "seg.dcm").SegmentSequence
    assert [segment.SegmentLabel for segment in segments] == ["liver", "Kidney_L", "left kidney cyst", "blob"]

    def written(segment) -> tuple:
        category = segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue
        kind = segment.SegmentedPropertyTypeCodeSequence[0]
        side = kind.get("SegmentedPropertyTypeModifierCodeSequence")
        region = segment.get("AnatomicRegionSequence")
        region_side = region[0].get("AnatomicRegionModifierSequence") if region else None
        return (
            category,
            kind.CodeValue,
            side[0].CodeValue if side else None,
            region[0].CodeValue if region else None,
            region_side[0].CodeValue if region_side else None,
        )

    assert [written(segment) for segment in segments] == [
        (ANATOMY, LIVER, None, None, None),
        (ANATOMY, KIDNEY, LEFT, None, None),
        (ABNORMAL, CYST, None, KIDNEY, LEFT),
        ("85756007", "85756007", None, None, None),
    ]
    assert (
        segments[1]
        .SegmentedPropertyTypeCodeSequence[0]
        .SegmentedPropertyTypeModifierCodeSequence[0]
        .CodingSchemeDesignator
        == "SCT"
    )


# what the summary of a file that leaves a structure of no concept uncoded (a 3D Slicer segmentation, an RT
# structure set) says of `coded_prompts`
UNCODED_SUMMARY = {**EXPECTED_SUMMARY, 4: "none: the name denotes no concept of the standard"}


def test_rt_structure_set_rois_carry_the_codes_their_names_denote(block_series, coded_prompts, tmp_path):
    """Each ROI observation of an RT structure set holds the category, the identification code with its
    laterality modifier, and the anatomic region with its laterality that the ROI's name denotes, read back
    (`read_dicom_codes`) to the name's codes; an ROI whose name denotes nothing is left uncoded."""
    from msa_hf.data.structure_codes import read_dicom_codes

    summary = predict_file(
        BoxFillSam(32), block_series, tmp_path / "rs.dcm", coded_prompts, dicom_output="rtstruct"
    )
    assert summary["codes"] == UNCODED_SUMMARY
    written = pydicom.dcmread(tmp_path / "rs.dcm")
    observations = written.RTROIObservationsSequence
    read = [read_dicom_codes(item, "RTROIIdentificationCodeSequence") for item in observations]
    assert read == [structure_code(prompt.name) for prompt in coded_prompts[:3]] + [None]
    kidney = observations[1].RTROIIdentificationCodeSequence[0]
    assert kidney.CodeValue == KIDNEY
    assert kidney.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == LEFT
    assert observations[2].AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0].CodeValue == LEFT
    assert "SegmentedPropertyCategoryCodeSequence" not in observations[3]


def test_slicer_segments_carry_the_codes_as_slicers_terminology(block_series, coded_prompts, tmp_path):
    """3D Slicer's own reader (slicerio) reads each coded segment's terminology back to the codes, with the
    DICOM master lists as contexts; an unknown name has no terminology."""
    slicerio = pytest.importorskip("slicerio")
    pytest.importorskip("SimpleITK")
    summary = predict_file(BoxFillSam(32), block_series, tmp_path / "case.seg.nrrd", coded_prompts)
    assert summary["codes"] == UNCODED_SUMMARY
    segments = {
        segment["name"]: segment
        for segment in slicerio.read_segmentation(str(tmp_path / "case.seg.nrrd"), skip_voxels=True)[
            "segments"
        ]
    }
    liver = segments["liver"]["terminology"]
    assert liver["contextName"] == "Segmentation category and type - DICOM master list"
    assert liver["category"] == ["SCT", ANATOMY, "Anatomical Structure"]
    assert liver["type"] == ["SCT", LIVER, "Liver"]
    assert "typeModifier" not in liver and "anatomicRegion" not in liver
    assert segments["Kidney_L"]["terminology"]["typeModifier"] == ["SCT", LEFT, "Left"]
    cyst = segments["left kidney cyst"]["terminology"]
    assert cyst["type"][:2] == ["SCT", CYST]
    assert cyst["anatomicContextName"] == "Anatomic codes - DICOM master list"
    assert cyst["anatomicRegion"] == ["SCT", KIDNEY, "Kidney"]
    assert cyst["anatomicRegionModifier"] == ["SCT", LEFT, "Left"]
    assert "terminology" not in segments["blob"]


def test_a_structure_has_one_colour_in_every_written_file(block_series, coded_prompts, tmp_path):
    """The k-th structure's colour in a 3D Slicer segmentation, an RT structure set's ROI display colour and a
    DICOM-SEG's recommended CIELab colour (converted back to RGB) are one colour, and the structures'
    colours differ."""
    pytest.importorskip("highdicom")
    pytest.importorskip("SimpleITK")
    from highdicom.color import CIELabColor

    from msa_hf.data.structure_colours import structure_colour_bytes

    model = BoxFillSam(32)
    predict_file(model, block_series, tmp_path / "seg.dcm", coded_prompts, dicom_output="seg")
    predict_file(model, block_series, tmp_path / "rs.dcm", coded_prompts, dicom_output="rtstruct")
    predict_file(model, block_series, tmp_path / "case.seg.nrrd", coded_prompts)
    seg = [
        CIELabColor.from_dicom_value(segment.RecommendedDisplayCIELabValue).to_rgb()
        for segment in pydicom.dcmread(tmp_path / "seg.dcm").SegmentSequence
    ]
    rt = [
        tuple(int(c) for c in roi.ROIDisplayColor)
        for roi in pydicom.dcmread(tmp_path / "rs.dcm").ROIContourSequence
    ]
    slicerio = pytest.importorskip("slicerio")
    segments = slicerio.read_segmentation(str(tmp_path / "case.seg.nrrd"), skip_voxels=True)["segments"]
    slicer = [tuple(round(255 * c) for c in segment["color"]) for segment in segments]
    expected = [structure_colour_bytes(k) for k in range(len(coded_prompts))]
    assert rt == slicer == expected
    assert all(np.abs(np.subtract(got, want)).max() <= 1 for got, want in zip(seg, expected, strict=True))
    assert len(set(expected)) == len(expected)


def test_a_table_name_finds_the_file_structure_of_its_concept():
    """A file's name the table does not hold takes the value of the one table name of its concept: sides
    must agree, two unmatched names of one concept (two lesions) or two table names of one concept match
    nothing, the generic code matches nothing, and a file's own code outweighs what its label says."""
    from msa_hf.data.structure_codes import values_by_concept

    table = {"left kidney": 1, "liver": 2, "lesion": 3}
    assert values_by_concept(table, ["Kidney_L", "Liver", "lesion"]) == {**table, "Kidney_L": 1, "Liver": 2}
    assert values_by_concept(table, ["Kidney_R", "kidney"]) == table  # another side, no side
    assert values_by_concept(table, ["lesion 1", "lesion 2"]) == table  # which one is the table's?
    assert values_by_concept({"left kidney": 1, "Kidney_L": 4}, ["kidney left"]) == {
        "left kidney": 1,
        "Kidney_L": 4,
    }
    assert values_by_concept({"tissue": 1}, ["soft tissue", "Segment 1"]) == {"tissue": 1}
    leber = structure_code("liver")
    assert values_by_concept(table, ["Leber"], {"Leber": leber}) == {**table, "Leber": 2}


def test_a_slicer_terminology_of_snomeds_older_identifiers_is_its_concept():
    """A segment's terminology as older 3D Slicer files write it (SNOMED RT identifiers, scheme SRT, in
    Slicer's own anatomy list) is read to its codes, and its concept is that of the SNOMED CT code: a
    segment labelled `Leber` coded so reads as the table's `liver`; a terminology of the generic code, or
    none, matches nothing."""
    from msa_hf.data.slicer_segmentations import read_terminology_entry
    from msa_hf.data.structure_codes import concept_key, values_by_concept

    older = (
        "Segmentation.Status:inprogress|TerminologyEntry:Segmentation category and type - 3D Slicer General "
        "Anatomy list~SRT^T-D000A^Anatomical Structure~SRT^T-62000^Liver~^^~Anatomic codes - DICOM master "
        "list~^^~^^|"
    )
    code = read_terminology_entry(older)
    assert (code.type.scheme_designator, code.type.value, code.type.meaning) == ("SRT", "T-62000", "Liver")
    assert concept_key(code) == concept_key(structure_code("liver"))
    assert values_by_concept({"liver": 5}, ["Leber"], {"Leber": code}) == {"liver": 5, "Leber": 5}
    tissue = older.replace("SRT^T-62000^Liver", "SCT^85756007^Tissue")
    assert values_by_concept({"liver": 5}, ["Leber"], {"Leber": read_terminology_entry(tissue)}) == {
        "liver": 5
    }
    assert read_terminology_entry("Segmentation.Status:inprogress|") is None


def test_names_of_one_concept_across_cases_are_joined_where_no_case_holds_two():
    """Names of one concept in different groups are joined to the name most groups use (a tie: the first
    alphabetically); never two names one group holds (two lesions), other sides, or the generic code."""
    from msa_hf.data.structure_codes import joined_names_note, names_by_concept

    cases = [["liver", "Kidney_L"], ["Liver", "left kidney"], ["liver", "left kidney", "Kidney_R"]]
    joined = names_by_concept(cases)
    assert joined == {"Kidney_L": "left kidney", "Liver": "liver"}
    assert "Kidney_L as 'left kidney'; Liver as 'liver'" in joined_names_note(joined)
    assert names_by_concept([["lesion 1", "lesion 2"], ["lesion 1"], ["lesion"]]) == {}
    assert names_by_concept([["tumour"], ["tumor"]]) == {"tumour": "tumor"}
    assert names_by_concept([["blob"], ["Blob"], ["structure 3"], ["structure 4"]]) == {}
    assert joined_names_note({}) is None


def _relabelled(path, old: str, new: str) -> None:
    """The DICOM-SEG, RT structure set or 3D Slicer segmentation at `path` with its structure named `old`
    named `new` (its codes kept)."""
    if path.name.endswith(".seg.nrrd"):
        header, blank, data = path.read_bytes().partition(b"\n\n")
        old_line, new_line = f"_Name:={old}\n".encode(), f"_Name:={new}\n".encode()
        assert (header + b"\n").count(old_line) == 1
        path.write_bytes((header + b"\n").replace(old_line, new_line)[:-1] + blank + data)
        return
    dataset = pydicom.dcmread(path)
    for segment in dataset.get("SegmentSequence", []):
        segment.SegmentLabel = new if segment.SegmentLabel == old else segment.SegmentLabel
    for roi in dataset.get("StructureSetROISequence", []):
        roi.ROIName = new if roi.ROIName == old else roi.ROIName
    dataset.save_as(path)


@pytest.mark.parametrize("kind", ["seg", "rtstruct", "seg.nrrd", "folder"])
def test_files_that_name_a_structure_otherwise_are_read_by_a_tables_names(
    block_series, coded_prompts, tmp_path, kind
):
    """A DICOM-SEG, an RT structure set, a 3D Slicer segmentation and a folder of structure files of
    `Kidney_L` and `liver` (in the three files that code their structures, the liver renamed `Leber`, still
    coded Liver), read through a table of `left kidney` and `liver` (values 7 and 9): each structure has the
    table's value where it was written, and the structures the table leaves out are left out."""
    from msa_hf.data.dicom_seg_labels import load_label_volume
    from msa_hf.data.volumes import load_volume

    prompts = coded_prompts[:2]  # liver (1), Kidney_L (2)
    reference = tmp_path / "reference.nii.gz"
    predict_file(BoxFillSam(32), block_series, reference, prompts)
    written = load_volume(reference, is_label=True).array
    if kind in ("seg", "rtstruct"):
        pytest.importorskip("highdicom")
        output = tmp_path / f"{kind}.dcm"
        predict_file(BoxFillSam(32), block_series, output, prompts, dicom_output=kind)
        _relabelled(output, "liver", "Leber")
    elif kind == "seg.nrrd":
        pytest.importorskip("SimpleITK")
        output = tmp_path / "case.seg.nrrd"
        predict_file(BoxFillSam(32), block_series, output, prompts)
        _relabelled(output, "liver", "Leber")
    else:
        output = tmp_path / "structures"
        predict_file(BoxFillSam(32), block_series, output, prompts, structure_files=True)
    read = load_label_volume(output, block_series, {"left kidney": 7, "liver": 9}).array
    expected = np.select([written == 2, written == 1], [7, 9], 0)
    np.testing.assert_array_equal(read, expected)
    assert (read == 7).any() and (read == 9).any()


@pytest.mark.parametrize("with_table", [True, False])
def test_score_pairs_a_structure_named_otherwise_in_prediction_and_reference(tmp_path, with_table):
    """A predicted DICOM-SEG's `Kidney_L` is scored against the reference's `left kidney`, through a table that
    names the latter or with no table: one class, its Dice that of the two masks (without the match, `Kidney_L`
    has no value in the table and is refused, and without a table the two are two classes)."""
    pytest.importorskip("highdicom")
    from msa_hf.data import load_volume, volume_from_axial_slices
    from msa_hf.evaluation.mask_files import score_mask_files
    from msa_hf.inference.dicom_seg import write_dicom_seg
    from msa_hf.testing import write_dicom_series

    shape = (6, 20, 24)
    series = tmp_path / "study" / "SER1"
    write_dicom_series(series, np.zeros(shape, np.float32))
    grid = load_volume(series)
    drawn = {
        "labels": (slice(1, 5), slice(2, 12), slice(3, 13)),
        "pred": (slice(2, 5), slice(2, 12), slice(3, 13)),
    }
    for folder, name in (("labels", "left kidney"), ("pred", "Kidney_L")):
        mask = np.zeros(shape, np.uint8)
        mask[drawn[folder]] = 1
        (tmp_path / folder).mkdir()
        write_dicom_seg(
            series, volume_from_axial_slices(mask), grid.affine, tmp_path / folder / "SER1.dcm", {1: name}
        )
    if with_table:
        (tmp_path / "labels.json").write_text('{"1": "left kidney"}')
    scores, _ = score_mask_files(
        tmp_path / "pred",
        tmp_path / "labels",
        images=tmp_path / "study",
        label_table=tmp_path / "labels.json" if with_table else None,
    )
    # without a table, the class is named as the files name it most, the first alphabetically on a tie
    assert [(score.class_name, score.dice) for score in scores] == [
        ("left kidney" if with_table else "Kidney_L", pytest.approx(2 * 3 / (3 + 4)))
    ]
