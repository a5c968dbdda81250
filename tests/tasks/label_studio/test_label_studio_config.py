"""The labeling config parser: class map per control, data objects, clear errors."""

from __future__ import annotations

import pytest

from tasks.errors import LabelingConfigError
from tasks.label_studio import parse_labeling_config


def test_fixture_config_class_map(ls_config):
    assert ls_config.class_map["bbox"] == {"car", "pedestrian", "cyclist", "traffic_sign"}
    assert ls_config.class_map["weather"] == {"sunny", "rain", "fog", "night"}
    assert ls_config.class_map["ner"] == {"PER", "LOC", "ORG"}
    assert "note" not in ls_config.class_map  # free text has no label set
    assert ls_config.relation_labels == ("located_in", "works_for")
    assert ls_config.controls["bbox_note"].per_region
    assert ls_config.controls["kp"].result_type == "keypointlabels"
    assert ls_config.controls["ner"].to_name == ("caption",)
    assert {name: obj.value_key for name, obj in ls_config.objects.items()} == {"image": "image", "caption": "caption"}


def test_aliases_nested_taxonomy_and_dynamic_labels():
    config = parse_labeling_config(
        """<View><Image name="img" value="$url"/>
        <RectangleLabels name="box" toName="img"><Label value="Car" alias="car"/></RectangleLabels>
        <Taxonomy name="tax" toName="img"><Choice value="Animal"><Choice value="Cat"/></Choice></Taxonomy>
        <Choices name="dyn" toName="img" value="$options"/></View>"""
    )
    assert config.class_map == {"box": {"Car", "car"}, "tax": {"Animal", "Cat"}, "dyn": None}


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<View><Image name='i' value='$i'></View>", "not valid XML at line 1"),
        ("", "not valid XML"),
        ("<Labels name='x' toName='y'/>", "root element is <Labels>"),
        ("<View><Choices toName='img'/></View>", "has no name attribute"),
    ],
)
def test_invalid_configs_raise_a_clear_error(xml, message):
    with pytest.raises(LabelingConfigError, match=message):
        parse_labeling_config(xml, name="project 3 config")
