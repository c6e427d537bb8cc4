"""Settings saved before *Handlers overdue after (seconds)* existed get its default (300).

Without a stored value the form shows the field empty and ``get_single_value`` reads it as 0;
the delivery worker takes an unset value as 300 already, so only what is shown changes.
"""

from cauldron_fabric.patches import default_for_a_new_settings_field


def execute() -> None:
	default_for_a_new_settings_field("handler_overdue_seconds")
