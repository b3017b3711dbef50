"""Every shipped preset loads: a YAML mapping without duplicate keys, valid against the schema."""

from importlib import resources

import pytest
import yaml

from headlens.config import load_config

PRESETS = sorted(p.name[: -len(".yaml")] for p in (resources.files("headlens") / "presets").iterdir()
                 if p.name.endswith(".yaml"))  # fmt: skip


class UniqueKeys(yaml.SafeLoader):
    """A loader that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        assert not repeated, f"repeated keys {repeated}"
        return super().construct_mapping(node, deep)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_has_no_repeated_key(name):
    text = (resources.files("headlens") / "presets" / f"{name}.yaml").read_text()
    assert isinstance(yaml.load(text, Loader=UniqueKeys), dict)
    load_config([], preset=name)
