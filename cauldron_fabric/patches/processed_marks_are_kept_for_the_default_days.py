"""Settings saved before *Keep processed marks for (days)* existed get its default (30).

Read as 0, the missing value would keep the marks for ever: the retention would stay off on
every site that upgrades, until its settings are saved again.
"""

from cauldron_fabric.patches import default_for_a_new_settings_field


def execute() -> None:
	default_for_a_new_settings_field("processed_event_retention_days")
