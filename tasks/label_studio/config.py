"""The Label Studio labeling config (XML): which controls exist, their labels, and the data objects."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import LabelingConfigError


@dataclass(frozen=True)
class Control:
    """A control tag (RectangleLabels, Choices, TextArea...): it writes results of `result_type`."""

    name: str
    result_type: str  # Label Studio writes the control's tag name, lowercased, as the result type
    to_name: tuple[str, ...]
    labels: tuple[str, ...]  # values and aliases; empty for free-form controls (TextArea, Rating)
    dynamic_labels: bool  # labels come from the task data (`value="$field"`), not from the config
    per_region: bool


@dataclass(frozen=True)
class DataObject:
    """An object tag (Image, Text, Audio...) showing the task data field `value_key`."""

    name: str
    tag: str  # lowercased
    value_key: str | None


@dataclass(frozen=True)
class LabelingConfig:
    controls: Mapping[str, Control]
    objects: Mapping[str, DataObject]
    relation_labels: tuple[str, ...]

    @property
    def class_map(self) -> dict[str, frozenset[str] | None]:
        """Allowed labels per labeling control; None for controls whose labels come from the data."""
        return {
            name: None if control.dynamic_labels else frozenset(control.labels)
            for name, control in self.controls.items()
            if control.labels or control.dynamic_labels
        }


def parse_labeling_config(xml: str, name: str = "labeling config") -> LabelingConfig:
    """Parse a labeling config; raise LabelingConfigError (naming `name`, line and column) if it is invalid."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        line, column = exc.position
        raise LabelingConfigError(
            f"{name}: the labeling config is not valid XML at line {line}, column {column + 1} ({exc}); "
            "check that every tag is closed and every attribute value is quoted"
        ) from None
    if root.tag.lower() != "view":
        raise LabelingConfigError(
            f"{name}: the labeling config's root element is <{root.tag}>; Label Studio configs start with <View>"
        )
    controls: dict[str, Control] = {}
    objects: dict[str, DataObject] = {}
    relation_labels: list[str] = []
    for element in root.iter():
        tag = element.tag.lower()
        if tag == "relations":
            relation_labels.extend(_choice_values(element))
        elif "toName" in element.attrib:
            control = _control(element, name)
            controls[control.name] = control
        elif "name" in element.attrib and element.get("value", "").startswith("$"):
            objects[element.attrib["name"]] = DataObject(
                name=element.attrib["name"], tag=tag, value_key=element.attrib["value"][1:] or None
            )
    return LabelingConfig(controls=controls, objects=objects, relation_labels=tuple(relation_labels))


def _control(element: ET.Element, config_name: str) -> Control:
    control_name = element.get("name")
    if not control_name:
        raise LabelingConfigError(
            f"{config_name}: control <{element.tag} toName={element.get('toName')!r}> has no name attribute; "
            "give every control a unique name"
        )
    return Control(
        name=control_name,
        result_type=element.tag.lower(),
        to_name=tuple(n.strip() for n in element.attrib["toName"].split(",") if n.strip()),
        labels=tuple(_choice_values(element)),
        dynamic_labels=element.get("value", "").startswith("$"),
        per_region=element.get("perRegion", "").lower() == "true",
    )


def _choice_values(element: ET.Element) -> list[str]:
    """Values and aliases of the Label / Choice / Relation elements under `element` (nested for Taxonomy)."""
    values: list[str] = []
    for child in element.iter():
        if child is element or child.tag.lower() not in {"label", "choice", "relation"}:
            continue
        values.extend(v for v in (child.get("value"), child.get("alias")) if v)
    return values
