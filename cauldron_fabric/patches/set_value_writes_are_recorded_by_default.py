"""Settings saved before *Writes without document hooks* existed show its default (Writes that
update modified).

The policy takes an empty value as that default already, so only what the form shows changes.
"""

from cauldron_fabric.patches import default_for_a_new_settings_field


def execute() -> None:
	default_for_a_new_settings_field("capture_set_value")
