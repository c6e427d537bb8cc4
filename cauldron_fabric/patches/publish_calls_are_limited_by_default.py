"""Settings saved before *Publish API calls per user and minute* existed get its default (600).

Read as 0, the missing value would turn the limit off on every site that upgrades, until its
settings are saved again.
"""

from cauldron_fabric.patches import default_for_a_new_settings_field


def execute() -> None:
	default_for_a_new_settings_field("publish_rate_limit")
